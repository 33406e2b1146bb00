package cli

import (
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDevKeepRunning: fleet dev --keep-running verifies its stream, then
// stays up and says how to publish; an event published with fleet publish
// as it says is processed and shows in /metrics; the operator console it
// prints serves its pages to the token it prints, and nothing without it;
// SIGINT ends it with 0.
func TestDevKeepRunning(t *testing.T) {
	dev := startChild(t, exec.Command(binary, "dev", "--keep-running", "--events", "200", "--accounts", "10", "--http-addr", "127.0.0.1:0"))
	out := dev.out
	eventually(t, 60*time.Second, "still running", func() bool { return strings.Contains(out.String(), "still running") })
	text := out.String()
	if !strings.Contains(text, "OK: every event applied exactly once") {
		t.Fatalf("no verified summary before keeping running:\n%s", text)
	}
	broker := regexp.MustCompile(`(?m)^  broker +(\S+)`).FindStringSubmatch(text)
	worker := regexp.MustCompile(`(?m)^  worker +http://(\S+)/metrics`).FindStringSubmatch(text)
	if broker == nil || worker == nil || !strings.Contains(text, "fleet publish --brokers "+broker[1]) || !strings.Contains(text, "kcat -P -b "+broker[1]) {
		t.Fatalf("no broker, worker or publish commands in:\n%s", text)
	}
	// One /metrics for the process; each worker's series carry its label.
	count := func() int {
		_, body := httpGet(t, "http://"+worker[1]+"/metrics")
		n := 0
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, `fleet_consumer_events_finished_total{outcome="processed",topic="payments",type="payment.captured",worker=`) {
				f := strings.Fields(l)
				v, _ := strconv.Atoi(f[len(f)-1])
				n += v
			}
		}
		return n
	}
	before := count()
	fleetOut(t, false, "publish", "--brokers", broker[1], "--topic", "payments", "--type", "payment.captured", "--source", "you",
		"--key", "acct-you", "--data", `{"account":"acct-you","amount_cents":1250}`)
	if before == 0 {
		t.Fatalf("the demo's captured events are not in /metrics: %d", before)
	}
	eventually(t, 30*time.Second, "the published event processed", func() bool { return count() == before+1 })

	console := regexp.MustCompile(`(?m)^  (http://\S+) +\(log in with the token (\w+)\)`).FindStringSubmatch(text)
	if console == nil {
		t.Fatalf("no console in:\n%s", text)
	}
	for path, want := range map[string]string{"/": "payments", "/deadletters": "dead letter", "/keys": "Held keys"} {
		req, _ := http.NewRequest(http.MethodGet, console[1]+path, nil)
		req.Header.Set("Authorization", "Bearer "+console[2])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("console %s: %s, without %q:\n%s", path, resp.Status, want, body)
		}
	}
	resp, err := http.Get(console[1] + "/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/login" {
		t.Errorf("console without a token: ended at %v, want the login page", resp.Request.URL)
	}

	dev.interrupt(t)
}
