package cli

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
)

// TestDLQListReadable lists dead letters of two consumer groups: each row
// says where its event came from (topic/partition@offset) and its group,
// --group keeps one group's, one dead letter is "1 dead letter", --long
// shows every header, the whole error and the value, and a topic that does
// not exist is an error, not "0 dead letters".
func TestDLQListReadable(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	w := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Balancer: fixedPartition(0), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		AllowAutoTopicCreation: true}
	defer w.Close()
	long := strings.Repeat("the downstream said no; ", 10) + "END"
	letter := func(group, id string, offset int) kafka.Message {
		ev := demo.Event(id, "acct-1", ledger.TypeCaptured, `{"account":"acct-1","amount_cents":1}`)
		return kafka.Message{Topic: consumer.DeadLetterTopic(e2eTopic), Key: ev.Key, Value: ev.Value, Headers: append(ev.Headers,
			kafka.Header{Key: consumer.HeaderOriginalTopic, Value: []byte(e2eTopic)},
			kafka.Header{Key: consumer.HeaderOriginalPartition, Value: []byte("0")},
			kafka.Header{Key: consumer.HeaderOriginalOffset, Value: []byte(strconv.Itoa(offset))},
			kafka.Header{Key: consumer.HeaderConsumerGroup, Value: []byte(group)},
			kafka.Header{Key: consumer.HeaderErrorKind, Value: []byte(consumer.ReasonAttemptsExhausted)},
			kafka.Header{Key: consumer.HeaderErrorMessage, Value: []byte(long)},
			kafka.Header{Key: consumer.HeaderAttempts, Value: []byte("12")})}
	}
	if err := w.WriteMessages(ctx, letter("ledger", "a-1", 41), letter("ledger", "a-2", 42), letter("audit", "b-1", 7)); err != nil {
		t.Fatal(err)
	}
	list := []string{"dlq", "list", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic}
	out := fleetOut(t, false, list...)
	for _, want := range []string{"FROM", "GROUP", "payments/0@41", "payments/0@7", "audit", "ledger", "3 dead letters in payments.dlq"} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, out)
		}
	}
	one := fleetOut(t, false, append(list, "--group", "audit")...)
	if !strings.Contains(one, "1 dead letter in payments.dlq") || strings.Contains(one, "a-1") {
		t.Errorf("dlq list --group audit:\n%s", one)
	}
	full := fleetOut(t, false, append(list, "--id", "a-2", "--long")...)
	for _, want := range []string{"END", "fleet-attempts", `{"account":"acct-1","amount_cents":1}`, "payments/0@42"} {
		if !strings.Contains(full, want) {
			t.Errorf("dlq list --long lacks %q:\n%s", want, full)
		}
	}
	// These dead letters say they ran, but the Redis asked knows nothing
	// of them: perhaps not the group's Redis.
	dry := fleetOut(t, false, "dlq", "replay", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic, "--group", "ledger",
		"--redis", c.redis.URL(), "--dry-run")
	for _, want := range []string{"checking against the records of group ledger in Redis at " + c.redis.Addr(),
		"warning: 2 dead letters ran (they count attempts) but no idempotency record of theirs is in this Redis"} {
		if !strings.Contains(dry, want) {
			t.Errorf("dlq replay --dry-run lacks %q:\n%s", want, dry)
		}
	}
	msg := fleetOut(t, true, "dlq", "list", "--brokers", strings.Join(c.brokers, ","), "--topic", "nosuchtopic")
	if !strings.Contains(msg, "neither nosuchtopic nor nosuchtopic.dlq exists") {
		t.Errorf("dlq list of a topic that does not exist: %s", msg)
	}
}

// TestCLIRedisUnreachable: a command that reads Redis, pointed at one that
// does not answer, ends at once with one line naming the Redis and the
// cause, and none of the client library's own logging.
func TestCLIRedisUnreachable(t *testing.T) {
	addr := freeAddr(t)
	start := time.Now()
	msg := fleetOut(t, true, "keys", "get", "--redis", "redis://"+addr+"/0", "--group", "g", "--source", "s", "--id", "i")
	took := time.Since(start)
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	if len(lines) != 1 || !strings.Contains(msg, "redis at "+addr) || !strings.Contains(msg, "connection refused") {
		t.Errorf("fleet keys get against a closed port printed:\n%s", msg)
	}
	if took > 3*time.Second {
		t.Errorf("fleet keys get took %v to give up on a closed port", took)
	}
}

// TestKeysGetSaysWhatItLookedUp: a record named by its event that is not
// there is reported with what it was looked up for, the message key
// included: without --key, under the event's id.
func TestKeysGetSaysWhatItLookedUp(t *testing.T) {
	c := newCluster(t, 1)
	msg := fleetOut(t, true, "keys", "get", "--redis", c.redis.URL(), "--group", "g", "--source", "s", "--id", "i-1")
	if !strings.Contains(msg, "(group g, source s, id i-1, no message key (so under the id i-1))") {
		t.Errorf("keys get without --key: %s", msg)
	}
	msg = fleetOut(t, true, "keys", "get", "--redis", c.redis.URL(), "--group", "g", "--source", "s", "--id", "i-1", "--key", "acct-1")
	if !strings.Contains(msg, "message key acct-1") {
		t.Errorf("keys get with --key: %s", msg)
	}
}

// TestDevTimeoutBoundsRedisWait: fleet dev pointed at a Redis that does not
// answer gives up after --timeout, with one clear line and a non-zero exit.
func TestDevTimeoutBoundsRedisWait(t *testing.T) {
	addr := freeAddr(t)
	cmd := exec.Command(binary, "dev", "--redis", "redis://"+addr+"/0", "--timeout", "3s", "--http-addr", "127.0.0.1:0")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("fleet dev succeeded without a Redis:\n%s", out.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("fleet dev still waiting after 30 s with --timeout 3s:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "redis at "+addr+" did not answer within 3s") {
		t.Errorf("fleet dev gave up without saying why:\n%s", out.String())
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("fleet dev took %v to give up", took)
	}
}
