package console

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLoginRefusesCrossSite: another site cannot log a browser in with
// the site's own token (login CSRF): the browser would then act, and be
// audited, as that token's holder.
func TestLoginRefusesCrossSite(t *testing.T) {
	s, _, audit := newTestServer(t)
	r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {viewerToken}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
		t.Fatalf("a cross-site login: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	if !strings.Contains(audit.String(), `"action":"login","outcome":"denied","detail":"cross-site`) {
		t.Fatalf("audit:\n%s", audit)
	}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// hostileOverview is a backend whose group members, topics and keys are
// named by someone hostile.
type hostileOverview struct{ *fakeBackend }

const rlo = "\u202e" // RIGHT-TO-LEFT OVERRIDE: "‮gpj.exe" reads "exe.jpg"

func (h hostileOverview) Overview(context.Context) (Overview, error) {
	evil := `<img src=x onerror=alert(1)>` + rlo
	return Overview{Group: "ledger",
		Members:    []Member{{ID: evil, ClientID: evil, Host: evil, Status: &MemberStatus{NotReady: evil, LastErrors: []string{evil}}}},
		Partitions: []PartitionLag{{Topic: evil, Member: evil}}, Tiers: []TierWait{{Topic: evil, Waiting: 1}},
		HeldKeys: []HeldKey{{Key: evil, Head: evil, State: evil}}, Problems: []string{evil}}, nil
}

// TestHostileTextShownQuoted: text that reaches a page from a request or
// from the broker, a member or a trusted proxy is escaped, and shown
// quoted when it holds control or format characters (an RTL override
// makes text read other than it is).
func TestHostileTextShownQuoted(t *testing.T) {
	s, _, _ := newTestServerWith(t, func(c *Config) {
		c.Backend = hostileOverview{c.Backend.(*fakeBackend)}
		c.Trusted = &TrustedHeader{Header: "X-Forwarded-User"}
	})
	get := func(target string, hdr map[string]string) string {
		r := httptest.NewRequest("GET", target, nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w.Body.String()
	}
	bearer := map[string]string{"Authorization": "Bearer " + viewerToken}
	for name, body := range map[string]string{
		"overview":            get("/", bearer),
		"keys":                get("/keys", bearer),
		"an unknown topic":    get("/deadletters/"+url.PathEscape("x"+rlo+"cod.exe")+"/0/1", bearer),
		"a trusted user name": get("/keys", map[string]string{"X-Forwarded-User": "mallory" + rlo + "nimda"}),
		"an unblock question": get("/keys/unblock?key="+url.QueryEscape("k"+rlo), bearer),
	} {
		// A hidden field carries its value as it is, for the action.
		shown := hiddenInput.ReplaceAllString(body, "")
		if strings.Contains(shown, "<img") || strings.Contains(shown, rlo) {
			t.Errorf("%s: hostile text reaches the page raw:\n%s", name, body)
		}
	}
}

// TestNoticeIsTheConsoles: the keys page says what an action did, and
// nothing a link made elsewhere puts in its query.
func TestNoticeIsTheConsoles(t *testing.T) {
	s, _, _ := newTestServer(t)
	forged := "Your session expired: log in again at evil.example"
	if body := do(t, s, "GET", "/keys?notice="+url.QueryEscape(forged), viewerToken, nil).Body.String(); strings.Contains(body, "evil.example") {
		t.Fatalf("the keys page shows a notice from its query:\n%s", body)
	}
	w := do(t, s, "POST", "/keys/forget", operatorToken, url.Values{"csrf": {csrfOf(t, s, operatorToken)}, "source": {"s"}, "id": {"i"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("forget: %d", w.Code)
	}
	if body := do(t, s, "GET", w.Header().Get("Location"), operatorToken, nil).Body.String(); !strings.Contains(body, "Forgotten: the event runs again") {
		t.Fatalf("the notice of a forget is not shown:\n%s", body)
	}
	// A notice is the caller's own: another caller's link does not show it.
	if body := do(t, s, "GET", w.Header().Get("Location"), viewerToken, nil).Body.String(); strings.Contains(body, "Forgotten") {
		t.Fatalf("another caller's notice is shown:\n%s", body)
	}
}

// clock is a time that a test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// confirmForm is the form of a dry run's page that confirms the replay.
func confirmForm(t *testing.T, page string) url.Values {
	t.Helper()
	_, form, ok := strings.Cut(page, `action="/replay"`)
	if !ok {
		t.Fatalf("no confirmation form:\n%s", page)
	}
	form, _, _ = strings.Cut(form, "</form>")
	v := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(form, -1) {
		v.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return v
}

// TestReplayConfirmsTheDryRun: the confirmation replays what the dry run
// considered, not what the filter selects when it is confirmed: a
// duration ago is a time, and the dead letters written since the dry run
// are left out, with a filter or without one (every dead letter).
func TestReplayConfirmsTheDryRun(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)}
	dryRunAt := clk.now()
	s, b, _ := newTestServerWith(t, func(c *Config) { c.Now = clk.now })
	csrf := csrfOf(t, s, operatorToken)
	for _, tc := range []struct {
		name   string
		filter url.Values
		since  time.Time
	}{
		{"since 90m", url.Values{"reason": {"permanent"}, "since": {"90m"}}, dryRunAt.Add(-90 * time.Minute)},
		{"every dead letter", url.Values{}, time.Time{}},
	} {
		clk.t = dryRunAt
		form := url.Values{"csrf": {csrf}}
		for k, v := range tc.filter {
			form[k] = v
		}
		w := do(t, s, "POST", "/replay/plan", operatorToken, form)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: dry run: %d", tc.name, w.Code)
		}
		confirm := confirmForm(t, w.Body.String())
		clk.add(time.Hour) // the operator reads the dry run; new dead letters arrive
		if w := do(t, s, "POST", "/replay", operatorToken, confirm); w.Code != http.StatusSeeOther {
			t.Fatalf("%s: confirm %v: %d", tc.name, confirm, w.Code)
		}
		s.jobs.wg.Wait()
		f := b.sels[len(b.sels)-1].Filter
		if !f.Since.Equal(tc.since) || !f.Until.Equal(dryRunAt) || f.Reason != tc.filter.Get("reason") {
			t.Errorf("%s: the confirmation %v replays since %v until %v; want since %v until the dry run, %v", tc.name, confirm,
				f.Since, f.Until, tc.since, dryRunAt)
		}
	}
}

// TestOneReplayAtATime: a confirmation sent twice (a double click, two
// operators) does not start two replays of the same dead letters; the
// second is refused, and audited, while the first runs.
func TestOneReplayAtATime(t *testing.T) {
	s, b, audit := newTestServer(t)
	b.hold = make(chan struct{})
	form := url.Values{"csrf": {csrfOf(t, s, operatorToken)}, "reason": {"permanent"}, "confirm": {"yes"}}
	first := do(t, s, "POST", "/replay", operatorToken, form)
	if first.Code != http.StatusSeeOther {
		t.Fatalf("first replay: %d", first.Code)
	}
	second := do(t, s, "POST", "/replay", operatorToken, form)
	close(b.hold)
	s.jobs.wg.Wait()
	if second.Code != http.StatusConflict || !strings.Contains(second.Body.String(), first.Header().Get("Location")) {
		t.Fatalf("a second replay while the first runs: %d\n%s", second.Code, second.Body)
	}
	if len(b.replays) != 1 || !strings.Contains(audit.String(), `"action":"replay","target":"dead letters where reason=permanent","outcome":"refused"`) {
		t.Fatalf("replays %v; audit:\n%s", b.replays, audit)
	}
	if w := do(t, s, "POST", "/replay", operatorToken, form); w.Code != http.StatusSeeOther {
		t.Fatalf("a replay after the first ended: %d", w.Code)
	}
}
