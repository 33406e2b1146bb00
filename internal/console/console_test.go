package console

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend is a Backend in memory: it records the calls that change
// something.
type fakeBackend struct {
	mu      sync.Mutex
	letters []DeadLetter
	filters []Filter
	replays []bool // dry run or not, per call
	sels    []Selection
	// hold, when not nil, keeps a replay (not a dry run) running until
	// it is closed.
	hold     chan struct{}
	forgets  []RecordRef
	unblocks []string
}

func (f *fakeBackend) Group() string { return "ledger" }
func (f *fakeBackend) Overview(context.Context) (Overview, error) {
	return Overview{Group: "ledger", LastFailures: f.letters, HeldKeys: []HeldKey{{Key: "acct-<b>1</b>", Head: "e1", Queued: 2}}}, nil
}
func (f *fakeBackend) DeadLetters(_ context.Context, flt Filter) ([]DeadLetter, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	return f.letters, len(f.letters), nil
}
func (f *fakeBackend) DeadLetter(_ context.Context, ref LetterRef) (DeadLetter, error) {
	for _, d := range f.letters {
		if d.Ref == ref {
			return d, nil
		}
	}
	return DeadLetter{}, ErrNotFound
}
func (f *fakeBackend) Replay(ctx context.Context, sel Selection, dry bool, progress func(int, int)) (ReplayReport, error) {
	f.mu.Lock()
	f.replays = append(f.replays, dry)
	f.sels = append(f.sels, sel)
	f.mu.Unlock()
	if f.hold != nil && !dry {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return ReplayReport{}, ctx.Err()
		}
	}
	if progress != nil {
		progress(1, 1)
	}
	return ReplayReport{DryRun: dry, Replayed: 1, Summary: "replayed 1 of 1", Verdicts: []ReplayVerdict{{Ref: f.letters[0].Ref, Verdict: "replay", Replay: true}}}, nil
}
func (f *fakeBackend) HeldKeys(context.Context) ([]HeldKey, error) {
	return []HeldKey{{Key: "acct-<b>1</b>", Head: "e1", Queued: 2}}, nil
}
func (f *fakeBackend) Record(context.Context, RecordRef) (Record, error) {
	return Record{Key: "fleet:idem:{acct-1}:x", State: "done"}, nil
}
func (f *fakeBackend) Forget(_ context.Context, ref RecordRef) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgets = append(f.forgets, ref)
	return true, nil
}
func (f *fakeBackend) Unblock(_ context.Context, key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unblocks = append(f.unblocks, key)
	return "unblocked " + key, nil
}

const (
	viewerToken   = "viewer-token-0123456789"
	operatorToken = "operator-token-0123456789"
)

func newTestServer(t *testing.T) (*Server, *fakeBackend, *bytes.Buffer) {
	t.Helper()
	return newTestServerWith(t, nil)
}

// newTestServerWith is newTestServer with its config edited first.
func newTestServerWith(t *testing.T, edit func(*Config)) (*Server, *fakeBackend, *bytes.Buffer) {
	t.Helper()
	tokens, err := ParseTokens("# the console's tokens\nvera viewer " + viewerToken + "\nopal operator " + operatorToken + "\n")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{letters: []DeadLetter{{Ref: LetterRef{Topic: "payments.dlq", Partition: 0, Offset: 7}, Written: time.Now(),
		Key: []byte("acct-1"), Type: "payment.captured", ID: "<script>alert(1)</script>", Reason: "permanent",
		Headers: []Header{{Key: "x-<i>odd</i>", Value: []byte("a\x00b\x1b[31m")}}, Value: []byte(`{"note":"<script>alert(2)</script>"}`)}}}
	var audit bytes.Buffer
	cfg := Config{Backend: b, Tokens: tokens, Audit: &lockedWriter{w: &audit}}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, b, &audit
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func do(t *testing.T, s *Server, method, target, tok string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf reads the CSRF token a page gives tok.
func csrfOf(t *testing.T, s *Server, tok string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(do(t, s, "GET", "/deadletters", tok, nil).Body.String())
	if m == nil {
		t.Fatal("no CSRF token on the dead-letters page")
	}
	return m[1]
}

func TestConfigNeedsAccess(t *testing.T) {
	_, err := New(Config{Backend: &fakeBackend{}, Audit: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "no access configured") {
		t.Fatalf("a console without tokens or a trusted header: %v", err)
	}
}

func TestParseTokensRefuses(t *testing.T) {
	for _, text := range []string{
		"vera viewer short",
		"vera admin " + viewerToken,
		"vera viewer",
		"vera viewer " + viewerToken + "\nvera operator " + operatorToken,
		"vera viewer " + viewerToken + "\nopal operator " + viewerToken,
	} {
		if _, err := ParseTokens(text); err == nil {
			t.Errorf("ParseTokens(%q) accepted it", text)
		}
	}
}

func TestUnauthenticated(t *testing.T) {
	s, _, _ := newTestServer(t)
	if w := do(t, s, "GET", "/", "", nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("a browser without a session: %d %s", w.Code, w.Header().Get("Location"))
	}
	if w := do(t, s, "GET", "/", "wrong-token-0123456789", nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("a wrong bearer token: %d", w.Code)
	}
	if w := do(t, s, "POST", "/keys/unblock", "", url.Values{"key": {"k"}}); w.Code != http.StatusUnauthorized {
		t.Fatalf("an action without credentials: %d", w.Code)
	}
}

func TestViewerCannotAct(t *testing.T) {
	s, b, audit := newTestServer(t)
	csrf := csrfOf(t, s, viewerToken)
	for path, form := range map[string]url.Values{
		"/keys/unblock": {"key": {"acct-1"}},
		"/keys/forget":  {"source": {"s"}, "id": {"i"}},
		"/replay":       {"topic": {"payments.dlq"}, "partition": {"0"}, "offset": {"7"}, "confirm": {"yes"}},
	} {
		form.Set("csrf", csrf)
		if w := do(t, s, "POST", path, viewerToken, form); w.Code != http.StatusForbidden {
			t.Fatalf("viewer POST %s: %d", path, w.Code)
		}
	}
	if len(b.unblocks)+len(b.forgets)+len(b.replays) != 0 {
		t.Fatalf("the backend was asked to act: %v %v %v", b.unblocks, b.forgets, b.replays)
	}
	if n := strings.Count(audit.String(), `"outcome":"denied"`); n != 3 {
		t.Fatalf("%d denials audited, want 3:\n%s", n, audit)
	}
}

func TestActionNeedsCSRF(t *testing.T) {
	s, b, audit := newTestServer(t)
	for _, csrf := range []string{"", "forged", csrfOf(t, s, viewerToken)} {
		w := do(t, s, "POST", "/keys/unblock", operatorToken, url.Values{"key": {"acct-1"}, "csrf": {csrf}})
		if w.Code != http.StatusForbidden {
			t.Fatalf("unblock with CSRF %q: %d", csrf, w.Code)
		}
	}
	if len(b.unblocks) != 0 || !strings.Contains(audit.String(), "CSRF") {
		t.Fatalf("unblocks %v; audit:\n%s", b.unblocks, audit)
	}
	w := do(t, s, "POST", "/keys/unblock", operatorToken, url.Values{"key": {"acct-1"}, "csrf": {csrfOf(t, s, operatorToken)}})
	if w.Code != http.StatusSeeOther || len(b.unblocks) != 1 {
		t.Fatalf("unblock with the operator's CSRF token: %d, unblocks %v", w.Code, b.unblocks)
	}
	if !strings.Contains(audit.String(), `"who":"opal","role":"operator","action":"unblock","target":"key acct-1","outcome":"ok"`) {
		t.Fatalf("audit:\n%s", audit)
	}
}

func TestCrossSiteRefused(t *testing.T) {
	s, b, _ := newTestServer(t)
	r := httptest.NewRequest("POST", "/keys/unblock", strings.NewReader(url.Values{"key": {"k"}, "csrf": {csrfOf(t, s, operatorToken)}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", "Bearer "+operatorToken)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || len(b.unblocks) != 0 {
		t.Fatalf("cross-site POST: %d, unblocks %v", w.Code, b.unblocks)
	}
}

func TestLoginMakesASession(t *testing.T) {
	s, _, audit := newTestServer(t)
	w := do(t, s, "POST", "/login", "", url.Values{"token": {operatorToken}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login: %d", w.Code)
	}
	ck := w.Result().Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || strings.Contains(ck[0].Value, operatorToken) {
		t.Fatalf("session cookie: %+v", ck)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(ck[0])
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "opal (operator)") {
		t.Fatalf("overview with the session: %d", w.Code)
	}
	if w := do(t, s, "POST", "/login", "", url.Values{"token": {"nope-nope-nope-nope"}}); w.Code != http.StatusUnauthorized {
		t.Fatalf("login with a wrong token: %d", w.Code)
	}
	if strings.Contains(audit.String(), operatorToken) || !strings.Contains(audit.String(), `"action":"login","outcome":"denied"`) {
		t.Fatalf("audit:\n%s", audit)
	}
}

func TestTrustedHeader(t *testing.T) {
	b := &fakeBackend{}
	s, err := New(Config{Backend: b, Trusted: &TrustedHeader{Header: "X-Forwarded-User", Operators: []string{"opal"}}, Audit: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	for user, role := range map[string]string{"opal": "operator", "vera": "viewer"} {
		r := httptest.NewRequest("GET", "/keys", nil)
		r.Header.Set("X-Forwarded-User", user)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), user+" ("+role+")") {
			t.Fatalf("%s: %d", user, w.Code)
		}
	}
}

// TestHostileContentEscaped: a dead letter's id, headers and value are
// shown escaped; control characters are shown quoted.
func TestHostileContentEscaped(t *testing.T) {
	s, _, _ := newTestServer(t)
	for _, path := range []string{"/deadletters", "/deadletters/payments.dlq/0/7", "/", "/keys"} {
		body := do(t, s, "GET", path, viewerToken, nil).Body.String()
		if strings.Contains(body, "<script>") || strings.Contains(body, "<i>odd") || strings.Contains(body, "<b>1") {
			t.Fatalf("%s prints hostile markup:\n%s", path, body)
		}
		if path != "/keys" && !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Fatalf("%s does not show the id escaped", path)
		}
	}
	body := do(t, s, "GET", "/deadletters/payments.dlq/0/7", viewerToken, nil).Body.String()
	if !strings.Contains(body, `&#34;a\x00b\x1b[31m&#34;`) || strings.Contains(body, "\x1b") {
		t.Fatalf("the header's control characters are not shown quoted:\n%s", body)
	}
	if !strings.Contains(body, "&#34;note&#34;: &#34;&lt;script&gt;alert(2)&lt;/script&gt;&#34;") {
		t.Fatalf("the JSON value is not shown indented and escaped:\n%s", body)
	}
}

func TestDryRunThenReplay(t *testing.T) {
	s, b, audit := newTestServer(t)
	csrf := csrfOf(t, s, operatorToken)
	w := do(t, s, "POST", "/replay/plan", operatorToken, url.Values{"csrf": {csrf}, "reason": {"permanent"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="confirm" value="yes"`) || len(b.replays) != 1 || !b.replays[0] {
		t.Fatalf("dry run: %d, replays %v", w.Code, b.replays)
	}
	if w := do(t, s, "POST", "/replay", operatorToken, url.Values{"csrf": {csrf}, "reason": {"permanent"}}); w.Code != http.StatusBadRequest {
		t.Fatalf("a replay without its confirmation: %d", w.Code)
	}
	w = do(t, s, "POST", "/replay", operatorToken, url.Values{"csrf": {csrf}, "reason": {"permanent"}, "confirm": {"yes"}})
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "/jobs/") {
		t.Fatalf("replay: %d %s", w.Code, w.Header().Get("Location"))
	}
	s.Close() // waits for the replay
	page := do(t, s, "GET", w.Header().Get("Location"), viewerToken, nil).Body.String()
	if !strings.Contains(page, "Done:") || len(b.replays) != 2 || b.replays[1] {
		t.Fatalf("job page after the replay (replays %v):\n%s", b.replays, page)
	}
	if !strings.Contains(audit.String(), `"action":"replay finished","target":"dead letters where reason=permanent","outcome":"ok"`) {
		t.Fatalf("audit:\n%s", audit)
	}
}

func TestFilterReachesTheBackend(t *testing.T) {
	s, b, _ := newTestServer(t)
	w := do(t, s, "GET", "/deadletters?type=payment.captured&reason=permanent&since=90m&page=3", viewerToken, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("%d", w.Code)
	}
	f := b.filters[len(b.filters)-1]
	if f.Type != "payment.captured" || f.Reason != "permanent" || f.Skip != 2*pageSize || f.Limit != pageSize ||
		time.Since(f.Since) < 89*time.Minute || time.Since(f.Since) > 91*time.Minute {
		t.Fatalf("filter: %+v", f)
	}
	if w := do(t, s, "GET", "/deadletters?since=yesterday", viewerToken, nil); w.Code != http.StatusBadRequest {
		t.Fatalf("a bad since: %d", w.Code)
	}
}

func TestSecurityHeaders(t *testing.T) {
	s, _, _ := newTestServer(t)
	h := do(t, s, "GET", "/", viewerToken, nil).Header()
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || h.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("headers: %v", h)
	}
}
