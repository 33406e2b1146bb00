package cli

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDevKeepRunning: fleet dev --keep-running verifies its stream, then
// stays up and says how to publish; an event published with fleet publish
// as it says is processed and shows in /metrics; SIGINT ends it with 0.
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

	dev.interrupt(t)
}
