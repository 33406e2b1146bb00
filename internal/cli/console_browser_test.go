package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
)

// Tokens of the browser test's console.
const (
	consoleViewerToken   = "vera-viewer-token-0123456789"
	consoleOperatorToken = "opal-operator-token-0123456789"
)

// chromium finds the browser the console tests drive: FLEET_CHROMIUM, or
// Debian's chromium. .ci/run installs it; without it the test fails and
// says so.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("FLEET_CHROMIUM"), "/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("no chromium to drive: install it (Debian package chromium; .ci/run does) or set FLEET_CHROMIUM")
	return ""
}

// screenshots is where the console tests save their screenshots:
// FLEET_CONSOLE_SCREENSHOTS (docs/console.md's are made with
// FLEET_CONSOLE_SCREENSHOTS=docs/console, from the repository's root: see
// docs/console.md), else a temporary directory.
func screenshots(t *testing.T) string {
	if dir := os.Getenv("FLEET_CONSOLE_SCREENSHOTS"); dir != "" {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join("..", "..", dir)
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// browser is a headless Chromium tab, closed at the end of the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.WindowSize(1360, 900), chromedp.Flag("disable-gpu", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// consoleFixture is a broker, Redis, two workers with dead letters and a
// held key, and fleet console on them.
type consoleFixture struct {
	c    *cluster
	url  string
	tabs context.Context
	shot string
}

func newConsoleFixture(t *testing.T) *consoleFixture {
	c := newCluster(t, 2)
	lines := `{"id":"bad-h","type":"payment.captured","key":"acct-h","data":{"account":"acct-h","amount_cents":-5}}
{"id":"good-h","type":"payment.captured","key":"acct-h","data":{"account":"acct-h","amount_cents":700}}
{"id":"bad-1","type":"payment.captured","key":"acct-1","data":{"account":"acct-1","amount_cents":-1}}
{"id":"ok-2","type":"payment.captured","key":"acct-2","data":{"account":"acct-2","amount_cents":200}}
{"id":"what-3","type":"payment.teleported","key":"acct-3","data":{"account":"acct-3","amount_cents":3}}
`
	path := filepath.Join(t.TempDir(), "payments.jsonl")
	if err := writeFile(path, lines); err != nil {
		t.Fatal(err)
	}
	fleetOut(t, false, "publish", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic, "--source", "shop", "--file", path)
	// An undecodable message with hostile content, and a dead letter a
	// replay can apply: written as a worker would have, for the group.
	c.publish([]kafka.Message{{Key: []byte("acct-x"), Value: []byte(`<script>alert("value")</script>`), Headers: []kafka.Header{
		{Key: `x-<b>odd</b>`, Value: []byte("<img src=x onerror=alert(1)>\x00\x1b[31m")}}}})
	ok := demo.Event("replay-me", "acct-r", ledger.TypeCaptured, `{"account":"acct-r","amount_cents":900}`)
	dlq := &kafka.Writer{Addr: kafka.TCP(c.brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, AllowAutoTopicCreation: true}
	defer dlq.Close()
	if err := dlq.WriteMessages(context.Background(), kafka.Message{Topic: consumer.DeadLetterTopic(e2eTopic), Key: ok.Key, Value: ok.Value,
		Headers: append(ok.Headers,
			kafka.Header{Key: consumer.HeaderOriginalTopic, Value: []byte(e2eTopic)},
			kafka.Header{Key: consumer.HeaderOriginalPartition, Value: []byte("0")},
			kafka.Header{Key: consumer.HeaderOriginalOffset, Value: []byte("0")},
			kafka.Header{Key: consumer.HeaderConsumerGroup, Value: []byte("ledger-e2e")},
			kafka.Header{Key: consumer.HeaderErrorKind, Value: []byte(consumer.ReasonPermanent)},
			kafka.Header{Key: consumer.HeaderErrorMessage, Value: []byte("the downstream was down")})}); err != nil {
		t.Fatal(err)
	}
	status := []string{freeAddr(t), freeAddr(t)}
	c.startWorker("a", "--on-dead-letter", "hold", "--http-addr", status[0])
	c.startWorker("b", "--on-dead-letter", "hold", "--http-addr", status[1])
	ctx := context.Background()
	eventually(t, 60*time.Second, "acct-2 credited", func() bool { return c.rdb.Get(ctx, ledger.BalanceKey("acct-2")).Val() == "200" })

	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := writeFile(tokens, "# who role token\nvera viewer "+consoleViewerToken+"\nopal operator "+consoleOperatorToken+"\n"); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	startChild(t, exec.Command(binary, append([]string{"console", "--brokers", strings.Join(c.brokers, ","), "--topics", e2eTopic,
		"--group", "ledger-e2e", "--listen", addr, "--tokens-file", tokens, "--status-urls", strings.Join(status, ",")}, c.redisArgs...)...))
	eventually(t, 30*time.Second, "the console up", func() bool {
		code, _ := get(addr, "/login")
		return code == http.StatusOK
	})
	return &consoleFixture{c: c, url: "http://" + addr, tabs: browser(t), shot: screenshots(t)}
}

// run runs browser steps, failing the test with the step that failed and
// the page it was on.
func (f *consoleFixture) run(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.tabs, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		html, _ := chromedp.Run(f.tabs, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("%s: %v\npage:\n%s", what, err, html)
	}
}

// value runs one browser action that answers a value.
func value[T any](t *testing.T, f *consoleFixture, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(f.tabs, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// shoot saves a screenshot of the page as name.png.
func (f *consoleFixture) shoot(t *testing.T, name string) {
	t.Helper()
	png := value(t, f, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(f.shot, "console-"+name+".png"), png, 0o600); err != nil {
		t.Fatal(err)
	}
}

// text is the text of the first node sel (CSS) matches.
func (f *consoleFixture) text(t *testing.T, sel string) string {
	t.Helper()
	return value(t, f, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// login logs the tab in with token.
func (f *consoleFixture) login(t *testing.T, token string) {
	t.Helper()
	f.run(t, "log in",
		chromedp.Navigate(f.url+"/login"),
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Submit(chromedp.CSS(`input[name="token"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#partitions`)))
}

var countRe = regexp.MustCompile(`^(\d+) dead letters?`)

// count reads the dead-letters page's count.
func (f *consoleFixture) count(t *testing.T, query string) int {
	t.Helper()
	f.run(t, "dead letters "+query, chromedp.Navigate(f.url+"/deadletters?"+query), chromedp.WaitVisible(chromedp.CSS(`#count`)))
	m := countRe.FindStringSubmatch(f.text(t, "#count"))
	if m == nil {
		t.Fatalf("dead letters %s: count %q", query, f.text(t, "#count"))
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestConsoleInABrowser drives fleet console in headless Chromium against
// kfake, a real redis-server and two workers: every page renders, filters
// narrow the table, a dry run then a replay applies the event once,
// forget and unblock work, hostile content is shown escaped, a viewer
// cannot act, and an action without the CSRF token is refused. It saves
// a screenshot of each page.
func TestConsoleInABrowser(t *testing.T) {
	f := newConsoleFixture(t)
	c := f.c
	ctx := context.Background()
	eventually(t, 60*time.Second, "five dead letters and acct-h held", func() bool {
		out := fleetOut(t, false, append([]string{"keys", "blocked"}, c.redisArgs...)...)
		return strings.Contains(out, "acct-h") &&
			strings.Count(fleetOut(t, false, "dlq", "list", "--json", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic), "\n") == 5
	})

	f.login(t, consoleOperatorToken)
	overview := f.text(t, "main")
	for _, want := range []string{"Members", "payments", "acct-h", "bad-h"} {
		if !strings.Contains(overview, want) {
			t.Errorf("overview lacks %q:\n%s", want, overview)
		}
	}
	members := value(t, f, "count members", chromedp.Evaluate[int](`document.querySelectorAll('#members tr').length - 1`))
	joined := value(t, f, "count members joined", chromedp.Evaluate[int](`[...document.querySelectorAll('#members td')].filter(td => td.textContent.trim().startsWith('joined')).length`))
	if members != 2 || joined != 2 {
		t.Errorf("%d members on the overview, %d of them joined by their /status, want 2 and 2", members, joined)
	}
	f.shoot(t, "overview")

	all := f.count(t, "")
	f.shoot(t, "deadletters")
	if all != 5 {
		t.Errorf("%d dead letters, want 5 (bad-h, bad-1, what-3, the undecodable one, replay-me)", all)
	}
	if n := f.count(t, "reason=permanent"); n != 3 {
		t.Errorf("reason=permanent: %d of %d, want 3", n, all)
	}
	if n := f.count(t, "reason=decode"); n != 1 {
		t.Errorf("reason=decode: %d, want 1", n)
	}
	if n := f.count(t, "key=acct-h"); n != 1 {
		t.Errorf("key=acct-h: %d, want 1", n)
	}

	// Hostile content: shown as text, nothing runs.
	f.count(t, "reason=decode")
	f.run(t, "open the undecodable one", chromedp.Click(chromedp.CSS(`table.letters a`)), chromedp.WaitVisible(chromedp.CSS(`#value`)))
	scripts := value(t, f, "count scripts", chromedp.Evaluate[int](`document.querySelectorAll('script, img').length`))
	shown := f.text(t, "#value")
	headers := f.text(t, "#headers")
	if scripts != 0 || !strings.Contains(shown, `<script>alert("value")</script>`) || !strings.Contains(headers, "x-<b>odd</b>") ||
		!strings.Contains(headers, `\x00\x1b[31m`) {
		t.Errorf("hostile dead letter: %d script or img elements, value %q, headers %q", scripts, shown, headers)
	}
	f.shoot(t, "deadletter")

	// A dry run, then the replay: the event is applied once.
	f.count(t, "id=replay-me")
	f.run(t, "dry run", chromedp.Click(chromedp.CSS(`form[action="/replay/plan"] button`)), chromedp.WaitVisible(chromedp.CSS(`#summary`)))
	if s := f.text(t, "#summary"); !strings.Contains(s, "would replay 1 of 1") {
		t.Fatalf("dry run: %s", s)
	}
	if got := c.rdb.Get(ctx, ledger.BalanceKey("acct-r")).Val(); got != "" {
		t.Fatalf("acct-r credited %q by a dry run", got)
	}
	f.shoot(t, "replay-dry-run")
	f.run(t, "replay", chromedp.Click(chromedp.CSS(`form[action="/replay"] button`)),
		chromedp.WaitVisible(chromedp.Search(`//p[@id="progress" and contains(., "Done:")]`)))
	f.shoot(t, "replay-done")
	eventually(t, 60*time.Second, "acct-r credited by the replay", func() bool { return c.rdb.Get(ctx, ledger.BalanceKey("acct-r")).Val() == "900" })
	f.count(t, "id=replay-me")
	f.run(t, "dry run again", chromedp.Click(chromedp.CSS(`form[action="/replay/plan"] button`)), chromedp.WaitVisible(chromedp.CSS(`#summary`)))
	if s := f.text(t, "#summary"); !strings.Contains(s, "already done") {
		t.Errorf("second dry run: %s", s)
	}

	// Keys: look up, forget, unblock.
	lookup := url.Values{"key": {"acct-2"}, "source": {"shop"}, "id": {"ok-2"}}
	f.run(t, "look up ok-2", chromedp.Navigate(f.url+"/keys?"+lookup.Encode()), chromedp.WaitVisible(chromedp.CSS(`#record`)))
	if s := f.text(t, "#record"); !strings.Contains(s, "done") {
		t.Errorf("record of ok-2: %s", s)
	}
	f.shoot(t, "keys")
	f.run(t, "forget ok-2", chromedp.Click(chromedp.CSS(`a.act`)), chromedp.WaitVisible(chromedp.CSS(`#question`)),
		chromedp.Click(chromedp.CSS(`button.act`)), chromedp.WaitVisible(chromedp.CSS(`#notice`)), chromedp.WaitVisible(chromedp.CSS(`#norecord`)))

	// A viewer cannot act: the unblock it confirms is refused.
	viewer := &consoleFixture{c: c, url: f.url, tabs: browser(t), shot: f.shot}
	viewer.login(t, consoleViewerToken)
	viewer.run(t, "viewer unblock", chromedp.Navigate(f.url+"/keys/unblock?key=acct-h"), chromedp.Click(chromedp.CSS(`button.act`)),
		chromedp.WaitVisible(chromedp.CSS(`.problem`)))
	if s := viewer.text(t, ".problem"); !strings.Contains(s, "only an operator may unblock") {
		t.Errorf("viewer's unblock: %s", s)
	}
	if out := fleetOut(t, false, append([]string{"keys", "blocked"}, c.redisArgs...)...); !strings.Contains(out, "acct-h") {
		t.Fatalf("acct-h no longer held after a viewer's unblock:\n%s", out)
	}

	// An action without the CSRF token is refused, by an operator too.
	form := url.Values{"key": {"acct-h"}}
	req, _ := http.NewRequest(http.MethodPost, f.url+"/keys/unblock", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+consoleOperatorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unblock without a CSRF token: %s", resp.Status)
	}

	f.run(t, "unblock acct-h", chromedp.Navigate(f.url+"/keys"), chromedp.WaitVisible(chromedp.CSS(`#heldkeys`)),
		chromedp.Click(chromedp.Search(`//table[@id="heldkeys"]//tr[td[1]="acct-h"]//a`)), chromedp.WaitVisible(chromedp.CSS(`#question`)),
		chromedp.Click(chromedp.CSS(`button.act`)),
		chromedp.WaitVisible(chromedp.CSS(`#notice`)))
	eventually(t, 60*time.Second, "acct-h's parked payment run", func() bool { return c.rdb.Get(ctx, ledger.BalanceKey("acct-h")).Val() == "700" })

	// The audit stream holds the actions, refused ones too.
	entries, err := c.rdb.XRange(ctx, AuditStream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[fmt.Sprint(e.Values["who"], " ", e.Values["action"], " ", e.Values["outcome"])] = true
	}
	for _, want := range []string{"opal replay started", "opal replay finished ok", "opal forget ok", "vera unblock denied", "opal unblock denied", "opal unblock ok"} {
		if !seen[want] {
			t.Errorf("audit stream lacks %q: %v", want, seen)
		}
	}
}
