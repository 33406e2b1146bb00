package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
)

// fleetOut runs the fleet binary and returns its standard output; the test
// fails when it exits non-zero, unless wantFail.
func fleetOut(t *testing.T, wantFail bool, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err != nil) != wantFail {
		t.Fatalf("fleet %s: %v (want failure: %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, wantFail, stdout.String(), stderr.String())
	}
	if wantFail {
		return stderr.String()
	}
	return stdout.String()
}

// TestDeadLetterReplay dead-letters events whose effect cannot be applied
// (their account's balance key was overwritten with a string), repairs the
// key, and replays: the dry run names exactly what the replay then does, an
// event resent by its producer meanwhile is skipped as done, every event is
// applied once, and a second replay changes nothing. fleet keys shows and
// forgets a record.
func TestDeadLetterReplay(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	balance := ledger.BalanceKey("acct-bad")
	if err := c.rdb.Set(ctx, balance, "corrupt", 0).Err(); err != nil {
		t.Fatal(err)
	}
	bad := []kafka.Message{
		demo.Event("bad-1", "acct-bad", ledger.TypeCaptured, `{"account":"acct-bad","amount_cents":100}`),
		demo.Event("bad-2", "acct-bad", ledger.TypeCaptured, `{"account":"acct-bad","amount_cents":20}`),
		demo.Event("bad-3", "acct-bad", ledger.TypeCaptured, `{"account":"acct-bad","amount_cents":3}`),
	}
	good := demo.Event("good-1", "acct-good", ledger.TypeCaptured, `{"account":"acct-good","amount_cents":50}`)
	c.publish(append(bad, good))
	c.startWorker("w1", "--retry-delays", "none")
	c.waitCommitted(2, int64(c.sent), 60*time.Second)

	brokers := strings.Join(c.brokers, ",")
	list := fleetOut(t, false, "dlq", "list", "--brokers", brokers, "--topic", e2eTopic)
	for _, id := range []string{"bad-1", "bad-2", "bad-3"} {
		if !strings.Contains(list, id) {
			t.Errorf("dlq list lacks %s:\n%s", id, list)
		}
	}
	if !strings.Contains(list, "3 dead letters in payments.dlq") || strings.Contains(list, "good-1") {
		t.Errorf("dlq list:\n%s", list)
	}
	var lines []dlqLine
	sc := bufio.NewScanner(strings.NewReader(fleetOut(t, false, "dlq", "list", "--brokers", brokers, "--topic", e2eTopic, "--json", "--id", "bad-2")))
	for sc.Scan() {
		var l dlqLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("JSON line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 1 || lines[0].ID != "bad-2" || lines[0].Reason != "invalid_effect" || lines[0].OriginalTopic != e2eTopic ||
		lines[0].Group != "ledger-e2e" || lines[0].Key != "acct-bad" || lines[0].Attempts != 1 {
		t.Fatalf("dlq list --json --id bad-2: %+v", lines)
	}

	// The fix, and the producer resending one of the events meanwhile.
	if err := c.rdb.Del(ctx, balance).Err(); err != nil {
		t.Fatal(err)
	}
	c.publish(bad[:1])
	c.waitCommitted(2, int64(c.sent), 60*time.Second)
	c.checkBalances(map[string]int64{"acct-bad": 100, "acct-good": 50})

	replay := []string{"dlq", "replay", "--brokers", brokers, "--topic", e2eTopic, "--redis", c.redis.URL()}
	dry := fleetOut(t, false, append(replay, "--dry-run")...)
	t.Logf("fleet dlq list:\n%s\nfleet dlq replay --dry-run:\n%s", list, dry)
	for _, want := range []string{"would replay 2 of 3 dead letters; would skip 1 already done", "bad-2", "bad-3"} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run lacks %q:\n%s", want, dry)
		}
	}
	for _, l := range strings.Split(dry, "\n") {
		if strings.Contains(l, "bad-1") && !strings.Contains(l, "would skip: already done") {
			t.Errorf("dry run: bad-1 is done and must be skipped: %q", l)
		}
	}
	c.checkBalances(map[string]int64{"acct-bad": 100})

	out := fleetOut(t, false, replay...)
	if !strings.Contains(out, "replayed 2 of 3 dead letters; skipped 1 already done") {
		t.Errorf("replay:\n%s", out)
	}
	c.sent += 2
	c.waitCommitted(2, int64(c.sent), 60*time.Second)
	c.checkBalances(map[string]int64{"acct-bad": 123, "acct-good": 50})

	again := fleetOut(t, false, replay...)
	if !strings.Contains(again, "replayed 0 of 3 dead letters; skipped 3 already done") {
		t.Errorf("second replay:\n%s", again)
	}
	c.checkBalances(map[string]int64{"acct-bad": 123})

	// fleet keys: show, forget, and the record is gone.
	ref := []string{"--redis", c.redis.URL(), "--group", "ledger-e2e", "--source", demo.Source, "--id", "bad-2", "--key", "acct-bad"}
	var rec dedupe.Record
	if err := json.Unmarshal([]byte(fleetOut(t, false, append([]string{"keys", "get", "--json"}, ref...)...)), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.State != dedupe.StateDone || rec.Key != dedupe.Key("ledger-e2e", "acct-bad", demo.Source, "bad-2") || rec.Attempts != 1 {
		t.Errorf("keys get: %+v: done, after a fresh budget", rec)
	}
	if table := fleetOut(t, false, "keys", "get", "--redis", c.redis.URL(), rec.Key); !strings.Contains(table, "done") {
		t.Errorf("keys get by Redis key:\n%s", table)
	}
	if out := fleetOut(t, false, append([]string{"keys", "forget"}, ref...)...); !strings.Contains(out, "forgot "+rec.Key) {
		t.Errorf("keys forget: %s", out)
	}
	if msg := fleetOut(t, true, append([]string{"keys", "get"}, ref...)...); !strings.Contains(msg, "no idempotency record at "+rec.Key) {
		t.Errorf("keys get after forget: %s", msg)
	}
	if msg := fleetOut(t, true, "keys", "get", "--redis", c.redis.URL(), "--group", "g"); !strings.Contains(msg, "give --source, --id") {
		t.Errorf("keys get without a record: %s", msg)
	}
}
