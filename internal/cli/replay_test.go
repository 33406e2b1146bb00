package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
)

// fixedPartition writes every message to one partition.
type fixedPartition int

func (p fixedPartition) Balance(kafka.Message, ...int) int { return int(p) }

// TestReplayToOriginalPartition replays two dead letters: one whose event
// was consumed from partition 3, under a key that kafka-go's hash and the
// Java client's murmur2 both send elsewhere, and one written without its
// value (too large for the dead-letter topic). The first goes back to
// partition 3, where its key's live events are; the second gets its value
// back from the original topic, partition and offset; a worker then applies
// both.
func TestReplayToOriginalPartition(t *testing.T) {
	const partitions = 4
	c := newCluster(t, partitions)
	ctx := context.Background()
	key := keyAwayFrom(t, 3, partitions)
	live := demo.Event("r-live", key, ledger.TypeCaptured, fmt.Sprintf(`{"account":%q,"amount_cents":5}`, key))
	big := demo.Event("r-big", "acct-big", ledger.TypeCaptured, `{"account":"acct-big","amount_cents":7}`)

	// The original of the value-less dead letter, on partition 1.
	w1 := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Balancer: fixedPartition(1), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		AllowAutoTopicCreation: true}
	defer w1.Close()
	if err := w1.WriteMessages(ctx, kafka.Message{Topic: e2eTopic, Key: big.Key, Value: big.Value, Headers: big.Headers}); err != nil {
		t.Fatal(err)
	}
	origin := func(partition int, offset int64, extra ...kafka.Header) []kafka.Header {
		return append([]kafka.Header{
			{Key: consumer.HeaderOriginalTopic, Value: []byte(e2eTopic)},
			{Key: consumer.HeaderOriginalPartition, Value: []byte(strconv.Itoa(partition))},
			{Key: consumer.HeaderOriginalOffset, Value: []byte(strconv.FormatInt(offset, 10))},
			{Key: consumer.HeaderConsumerGroup, Value: []byte("ledger-e2e")},
			{Key: consumer.HeaderErrorKind, Value: []byte(consumer.ReasonPermanent)},
		}, extra...)
	}
	letters := []kafka.Message{
		{Topic: consumer.DeadLetterTopic(e2eTopic), Key: live.Key, Value: live.Value, Headers: append(live.Headers, origin(3, 41)...)},
		{Topic: consumer.DeadLetterTopic(e2eTopic), Key: big.Key, Headers: append(big.Headers,
			origin(1, 0, kafka.Header{Key: consumer.HeaderDropped, Value: []byte("value")})...)},
	}
	if err := w1.WriteMessages(ctx, letters...); err != nil {
		t.Fatal(err)
	}

	out := fleetOut(t, false, "dlq", "replay", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic, "--redis", c.redis.URL())
	if !strings.Contains(out, "replayed 2 of 2 dead letters") {
		t.Fatalf("replay:\n%s", out)
	}
	c.sent = 3 // the original of the value-less dead letter, and the two replays

	got := map[string]kafka.Message{}
	for p := range partitions {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.brokers, Topic: e2eTopic, Partition: p, MaxWait: 50 * time.Millisecond})
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		last, err := r.ReadLag(rctx)
		for i := int64(0); err == nil && i < last; i++ {
			var m kafka.Message
			if m, err = r.ReadMessage(rctx); err == nil && demo.Header(m, "fleet-replayed-from") != "" {
				got[demo.Header(m, consumer.HeaderID)] = m
			}
		}
		cancel()
		r.Close()
		if err != nil {
			t.Fatalf("read partition %d: %v", p, err)
		}
	}
	if m, ok := got["r-live"]; !ok || m.Partition != 3 {
		t.Errorf("r-live replayed to partition %d (found %v), want 3, its original partition", m.Partition, ok)
	}
	if m, ok := got["r-big"]; !ok || m.Partition != 1 || string(m.Value) != string(big.Value) {
		t.Errorf("r-big replayed to partition %d with value %q (found %v), want partition 1 with the original value", m.Partition, m.Value, ok)
	}
	c.startWorker("w", "--retry-delays", "none")
	c.waitCommitted(partitions, int64(c.sent), 60*time.Second)
	c.checkBalances(map[string]int64{key: 5, "acct-big": 7}) // the original and its replay are one event
}

// keyAwayFrom returns an account key that neither kafka-go's hash nor
// murmur2 puts on partition p.
func keyAwayFrom(t *testing.T, p, partitions int) string {
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	for i := range 100 {
		k := fmt.Sprintf("acct-r%d", i)
		m := kafka.Message{Key: []byte(k)}
		if (&kafka.Hash{}).Balance(m, ids...) != p && (kafka.Murmur2Balancer{}).Balance(m, ids...) != p {
			return k
		}
	}
	t.Fatal("no key away from the partition")
	return ""
}

// TestReplayRefusesForgedDeadLetters writes dead letters as anyone who can
// write to payments.dlq could: one naming another original topic, one
// without its value pointing at another event's offset, and dead letters of
// two consumer groups. Replay sends nothing to another topic, republishes no
// other event than the dead letter's, asks which group when there are
// several, and replays only that group's.
func TestReplayRefusesForgedDeadLetters(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	w := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Balancer: fixedPartition(0), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		AllowAutoTopicCreation: true}
	defer w.Close()
	payout := demo.Event("payout-7", "acct-9", ledger.TypeCaptured, `{"account":"acct-9","amount_cents":100000}`)
	victim := demo.Event("old-1", "acct-9", ledger.TypeCaptured, `{"account":"acct-9","amount_cents":5000}`)
	if err := w.WriteMessages(ctx,
		kafka.Message{Topic: "payouts", Key: payout.Key, Value: payout.Value, Headers: payout.Headers},
		kafka.Message{Topic: e2eTopic, Key: victim.Key, Value: victim.Value, Headers: victim.Headers}); err != nil {
		t.Fatal(err)
	}
	letter := func(group, origTopic string, offset int64, ev kafka.Message, extra ...kafka.Header) kafka.Message {
		return kafka.Message{Topic: consumer.DeadLetterTopic(e2eTopic), Key: ev.Key, Value: ev.Value, Headers: append(append(ev.Headers,
			kafka.Header{Key: consumer.HeaderOriginalTopic, Value: []byte(origTopic)},
			kafka.Header{Key: consumer.HeaderOriginalPartition, Value: []byte("0")},
			kafka.Header{Key: consumer.HeaderOriginalOffset, Value: []byte(strconv.FormatInt(offset, 10))},
			kafka.Header{Key: consumer.HeaderConsumerGroup, Value: []byte(group)},
			kafka.Header{Key: consumer.HeaderErrorKind, Value: []byte(consumer.ReasonPermanent)}), extra...)}
	}
	mine := demo.Event("mine-1", "acct-1", ledger.TypeCaptured, `{"account":"acct-1","amount_cents":3}`)
	theirs := demo.Event("theirs-1", "acct-2", ledger.TypeCaptured, `{"account":"acct-2","amount_cents":4}`)
	claimed := demo.Event("claimed", "acct-9", ledger.TypeCaptured, `{"account":"acct-9","amount_cents":1}`)
	claimed.Value = nil
	if err := w.WriteMessages(ctx,
		letter("ledger-e2e", "payouts", 0, payout),
		letter("ledger-e2e", e2eTopic, 0, claimed, kafka.Header{Key: consumer.HeaderDropped, Value: []byte("value")}),
		letter("ledger-e2e", e2eTopic, 41, mine),
		letter("other-group", e2eTopic, 42, theirs),
	); err != nil {
		t.Fatal(err)
	}
	replay := []string{"dlq", "replay", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic, "--redis", c.redis.URL()}
	if msg := fleetOut(t, true, replay...); !strings.Contains(msg, "2 consumer groups (ledger-e2e, other-group): give --group") {
		t.Errorf("replay without --group over two groups' dead letters: %s", msg)
	}
	out := fleetOut(t, false, append(replay, "--group", "ledger-e2e")...)
	if !strings.Contains(out, "replayed 1 of 3 dead letters") { // --group keeps ledger-e2e's three
		t.Errorf("replay --group ledger-e2e:\n%s", out)
	}
	count := func(topic string) int64 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.brokers, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
		defer r.Close()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := r.ReadLag(rctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("payouts"); n != 1 {
		t.Errorf("payouts holds %d messages: a forged dead letter was replayed into another topic", n)
	}
	if n := count(e2eTopic); n != 2 {
		t.Errorf("%s holds %d messages, want 2 (the old event and mine-1): the value-less forgery republished another event, "+
			"or the other group's dead letter was replayed", e2eTopic, n)
	}
}

// TestCLIOutputEscaped writes a dead letter whose id, source and key hold a
// screen-clearing escape sequence and a newline that forges a row: the
// operator's tools print them escaped, never raw.
func TestCLIOutputEscaped(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	w := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Balancer: fixedPartition(0), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		AllowAutoTopicCreation: true}
	defer w.Close()
	// The dead-letter topic first: a writer that meets a topic the broker
	// is still creating fails its write.
	kc := &kafka.Client{Addr: kafka.TCP(c.brokers...)}
	dlq := consumer.DeadLetterTopic(e2eTopic)
	created, err := kc.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: dlq, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil || created.Errors[dlq] != nil {
		t.Fatal(err, created)
	}
	hostile := "evil\x1b[2J\n0  0  2099-01-01T00:00:00Z  forged"
	ev := demo.Event(hostile, "acct-\x1b]0;owned\x07", ledger.TypeCaptured, `{"account":"acct-x","amount_cents":1}`)
	ev.Headers = append(ev.Headers,
		kafka.Header{Key: consumer.HeaderOriginalTopic, Value: []byte(e2eTopic)},
		kafka.Header{Key: consumer.HeaderConsumerGroup, Value: []byte("ledger-e2e")},
		kafka.Header{Key: consumer.HeaderErrorKind, Value: []byte(consumer.ReasonPermanent)},
		kafka.Header{Key: consumer.HeaderErrorMessage, Value: []byte("bad\x1b[31mred\u202etxt.exe")})
	if err := w.WriteMessages(ctx, kafka.Message{Topic: consumer.DeadLetterTopic(e2eTopic), Key: ev.Key, Value: ev.Value, Headers: ev.Headers}); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(c.brokers, ",")
	for _, args := range [][]string{
		{"dlq", "list", "--brokers", brokers, "--topic", e2eTopic},
		{"dlq", "replay", "--brokers", brokers, "--topic", e2eTopic, "--redis", c.redis.URL(), "--dry-run"},
	} {
		out := fleetOut(t, false, args...)
		if strings.ContainsAny(out, "\x1b\x07\u202e") || strings.Contains(out, "forged\n") && !strings.Contains(out, `\u000a0  0`) {
			t.Errorf("fleet %s printed raw control characters:\n%q", args[1], out)
		}
		if !strings.Contains(out, `evil\u001b[2J\u000a0`) {
			t.Errorf("fleet %s: the id is not shown escaped:\n%s", args[1], out)
		}
	}
}
