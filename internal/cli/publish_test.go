package cli

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestPublish publishes with fleet publish as an upstream team would: one
// binary event with a generated id, one structured event, a batch of JSON
// lines on standard input (one of them a resend of an earlier id); a fleet
// process applies each event once.
func TestPublish(t *testing.T) {
	c := newCluster(t, 2)
	brokers := strings.Join(c.brokers, ",")
	base := []string{"publish", "--brokers", brokers, "--topic", e2eTopic, "--source", "payments-api"}

	out := fleetOut(t, false, append(base, "--type", ledger.TypeCaptured, "--key", "acct-p",
		"--data", `{"account":"acct-p","amount_cents":100}`)...)
	m := regexp.MustCompile(`^published id=(\S+) type=payment.captured source=payments-api key=acct-p to payments\n$`).FindStringSubmatch(out)
	if m == nil || len(m[1]) != 36 {
		t.Fatalf("publish output %q: want the generated id", out)
	}
	fleetOut(t, false, append(base, "--type", ledger.TypeCaptured, "--key", "acct-p", "--id", "s-1", "--structured",
		"--data", `{"account":"acct-p","amount_cents":20}`)...)

	lines := `{"id":"l-1","type":"payment.captured","key":"acct-q","data":{"account":"acct-q","amount_cents":7}}

{"id":"l-2","type":"payment.refunded","key":"acct-q","data":{"account":"acct-q","amount_cents":2}}
{"id":"s-1","type":"payment.captured","key":"acct-p","data":{"account":"acct-p","amount_cents":20}}
`
	cmd := exec.Command(binary, base...)
	cmd.Stdin = strings.NewReader(lines)
	batch, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(batch), "published id=") != 3 {
		t.Fatalf("publish from standard input: %v\n%s", err, batch)
	}
	c.sent = 5

	// What landed is a CloudEvent of each mode, as fleet decodes it.
	var got []string
	if err := readTopic(context.Background(), c.brokers, nil, e2eTopic, func(msg kafka.Message) error {
		ev, err := consumer.Decode(&msg)
		if err != nil {
			return err
		}
		got = append(got, ev.ID+"/"+ev.Source+"/"+ev.Type+"/"+ev.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || !strings.Contains(strings.Join(got, " "), "s-1/payments-api/payment.captured/acct-p") {
		t.Fatalf("published events: %v", got)
	}

	c.startWorker("a")
	c.waitCommitted(2, int64(c.sent), 60*time.Second)
	// s-1 was published twice (structured, then as a line): applied once.
	c.checkBalances(map[string]int64{"acct-p": 120, "acct-q": 5})

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--type", "t", "--data", "{not json"}, "data is not valid JSON"},
		{[]string{"--data", "{}"}, "type is required"},
		{[]string{"--type", "t", "--data", "{}", "--file", "x.jsonl"}, "not both"},
	} {
		if msg := fleetOut(t, true, append(base, bad.args...)...); !strings.Contains(msg, bad.want) {
			t.Errorf("fleet publish %v: %s, want %q", bad.args, msg, bad.want)
		}
	}
}
