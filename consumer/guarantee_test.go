package consumer_test

// Attack tests: each asserts a guarantee the engine should give, end to end
// over a real broker (kfake) and a real redis-server.

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/redistest"
)

// paymentFrom is payment with another CloudEvents source.
func paymentFrom(source, id, account, typ string, cents int64) kafka.Message {
	m := payment(id, account, typ, cents)
	for i := range m.Headers {
		if m.Headers[i].Key == consumer.HeaderSource {
			m.Headers[i].Value = []byte(source)
		}
	}
	return m
}

// idCounter counts handler calls (not only successes) per event id.
type idCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// inc counts a call of id and returns its number, from 1.
func (c *idCounter) inc(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[id]++
	return c.n[id]
}

func (c *idCounter) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// writerFor is a writer of its own to any topic, with the balancer given
// and room for messages of up to 4 MiB.
func (e *env) writerFor(name string, balancer kafka.Balancer) *kafka.Writer {
	tr := &kafka.Transport{}
	w := &kafka.Writer{
		Addr:         kafka.TCP(e.brokers...),
		Topic:        name,
		Balancer:     balancer,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchBytes:   4 << 20,
		Transport:    tr,
	}
	e.t.Cleanup(func() {
		w.Close()
		tr.CloseIdleConnections()
	})
	return w
}

func (e *env) write(w *kafka.Writer, msgs ...kafka.Message) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		e.t.Fatalf("write to %s: %v", w.Topic, err)
	}
}

// createTopic creates a topic with a number of partitions.
func (e *env) createTopic(name string, partitions int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&kafka.Client{Addr: kafka.TCP(e.brokers...), Transport: tr}).CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		e.t.Fatalf("create topic %s: %v", name, err)
	}
	if err := resp.Errors[name]; err != nil {
		e.t.Fatalf("create topic %s: %v", name, err)
	}
}

func (e *env) balance(account string) int64 {
	e.t.Helper()
	return e.balances([]string{account})[account]
}

// TestIdentityIgnoresMessageKey publishes one event (same source and id,
// same payload) three times under different Kafka keys: the key is routing,
// not identity. The copies under another key (or none) have records of
// their own, in their own key's slot, and can touch only their own key's
// state, so the balance moves once: the ledger refuses a payment keyed by
// anything but its account, and any handler's effects on another key's
// state are refused as invalid_effect. Every copy carries the same
// idempotency key to outside services.
func TestIdentityIgnoresMessageKey(t *testing.T) {
	e := newEnv(t, 1)
	var mu sync.Mutex
	keys := map[string]bool{}
	router, _ := newCountingRouter(t, nil)
	// A handler with no key check of its own: binding alone must hold.
	err := router.Register("counter.bumped", handlers.HandlerFunc(func(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
		mu.Lock()
		keys[tx.IdempotencyKey()] = true
		mu.Unlock()
		tx.IncrBy("counter:{acct-1}", 1)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	en := e.start(options{router: router})
	upper := payment("p1", "acct-1", ledger.TypeCaptured, 100)
	upper.Key = []byte("ACCT-1")
	none := payment("p1", "acct-1", ledger.TypeCaptured, 100)
	none.Key = nil
	bump := func(key []byte) kafka.Message {
		m := paymentFrom("counter-api", "c1", "acct-1", "counter.bumped", 1)
		m.Key = key
		return m
	}
	e.publish(payment("p1", "acct-1", ledger.TypeCaptured, 100), upper, none,
		bump([]byte("acct-1")), bump([]byte("ACCT-1")), bump(nil))
	waitFor(t, 20*time.Second, "the six copies finished", func() bool { return en.finished("") == 6 })
	if got := e.balance("acct-1"); got != 100 {
		t.Errorf("balance of acct-1 = %d, want 100: one event (source payments-api, id p1) under three Kafka keys was applied %d times",
			got, got/100)
	}
	if n, _ := e.rdb.Get(context.Background(), "counter:{acct-1}").Int64(); n != 1 {
		t.Errorf("counter = %d, want 1: a copy under another key changed acct-1's state", n)
	}
	if got := en.finished(consumer.OutcomeProcessed); got != 2 {
		t.Errorf("processed %d copies, want 2 (one per event)", got)
	}
	reasons := map[string]int{}
	for _, m := range e.dlq(4) {
		reasons[headerValue(m, "ce_id")+"/"+headerValue(m, consumer.HeaderErrorKind)]++
	}
	if reasons["p1/permanent"] != 2 || reasons["c1/invalid_effect"] != 2 {
		t.Errorf("dead letters %v: want the ledger's two copies refused as permanent, the counter's two as invalid_effect", reasons)
	}
	if len(keys) != 1 {
		t.Errorf("%d idempotency keys for one event under three message keys, want 1", len(keys))
	}
}

// TestSeparatorsInIdentity publishes two different events whose source and
// id, joined with a colon, read the same: both must run.
func TestSeparatorsInIdentity(t *testing.T) {
	e := newEnv(t, 1)
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router})
	e.publish(
		paymentFrom("payments-api:eu", "7", "acct-2", ledger.TypeCaptured, 50),
		paymentFrom("payments-api", "eu:7", "acct-2", ledger.TypeCaptured, 50),
	)
	waitFor(t, 20*time.Second, "both events finished", func() bool { return en.finished("") == 2 })
	if got := e.balance("acct-2"); got != 100 {
		t.Errorf("balance of acct-2 = %d, want 100: (payments-api:eu, 7) and (payments-api, eu:7) are different events, "+
			"yet only one was applied (%d processed, %d duplicate)", got,
			en.finished(consumer.OutcomeProcessed), en.finished(consumer.OutcomeDuplicate))
	}
}

// TestFirstPayloadStands fails an event once so that it waits on a retry
// topic with its claim released; meanwhile its id is reused with another
// payload. The first payload seen owns the identity: the reuse is the
// conflict, and the original completes when its retry runs.
func TestFirstPayloadStands(t *testing.T) {
	e := newEnv(t, 1)
	var c idCounter
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "x" && c.inc(ev.ID) == 1 {
			return errDownstream // retryable, first run only
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{time.Second}
	}})
	e.publish(payment("x", "acct-3", ledger.TypeCaptured, 10))
	waitFor(t, 20*time.Second, "the original sent to retry tier 1", func() bool { return en.finished(consumer.OutcomeRetried) == 1 })
	// The original now waits a second on payments.retry.1, its record
	// released with its fingerprint.
	e.publish(payment("x", "acct-3", ledger.TypeCaptured, 999))
	waitFor(t, 20*time.Second, "the reuse and the retry finished", func() bool { return en.finished("") == 3 })

	if got := e.balance("acct-3"); got != 10 {
		t.Errorf("balance of acct-3 = %d, want 10: the payload first seen for id x (10 cents) must stand, "+
			"the 999-cent reuse is a conflict", got)
	}
	if got := en.finished(consumer.OutcomeConflict); got != 1 {
		t.Errorf("%d conflicts, want 1", got)
	}
	if got := en.finished(consumer.OutcomeProcessed); got != 1 {
		t.Errorf("%d processed, want 1", got)
	}
	m := e.dlq(1)[0]
	if p, err := ledger.Decode(m.Value); err != nil || p.AmountCents != 999 || headerValue(m, consumer.HeaderErrorKind) != consumer.ReasonConflict {
		t.Errorf("the conflict dead letter holds %s (kind %q, from %s), want the 999-cent reuse", m.Value,
			headerValue(m, consumer.HeaderErrorKind), headerValue(m, consumer.HeaderOriginalTopic))
	}
}

// TestQueuedClaimKeepsLease queues an event behind a slow one of its key for
// longer than the lease: it was claimed when fetched, so its claim must stay
// its own while it waits. Producer duplicates arriving meanwhile must not
// take it over, and its handler runs once.
func TestQueuedClaimKeepsLease(t *testing.T) {
	e := newEnv(t, 1)
	var c idCounter
	slowStarted := make(chan struct{})
	var once sync.Once
	router, _ := newCountingRouter(t, func(ctx context.Context, ev handlers.Event) error {
		c.inc(ev.ID)
		if ev.ID == "slow" {
			once.Do(func() { close(slowStarted) })
			select {
			case <-time.After(2500 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	const lease = 600 * time.Millisecond
	en := e.start(options{router: router, lease: lease})
	e.publish(payment("slow", "acct-4", ledger.TypeCaptured, 10), payment("queued", "acct-4", ledger.TypeCaptured, 20))
	select {
	case <-slowStarted:
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for the slow handler to start")
	}
	// A sleep, not a condition: the attack needs wall time past the lease
	// of the queued event's claim (made when it was fetched, with the slow
	// one), and nothing in the engine marks that moment.
	time.Sleep(2 * lease)
	dup := payment("queued", "acct-4", ledger.TypeCaptured, 20)
	e.publish(dup, dup)
	waitFor(t, 20*time.Second, "all four messages finished", func() bool { return en.finished("") == 4 })

	if n := c.get("queued"); n != 1 {
		t.Errorf("handler called %d times for the queued event, want 1: its producer duplicates took its claim over", n)
	}
	if n := en.value("fleet_store_takeovers_total"); n != 0 {
		t.Errorf("takeovers = %v, want 0: no owner crashed or stalled", n)
	}
	if got := e.balance("acct-4"); got != 30 {
		t.Errorf("balance of acct-4 = %d, want 30", got)
	}
}

// TestRetryTopicsBeyondConfiguredTiers leaves an event on retry tier 2 (as
// an engine with more tiers would, before a configuration change) and starts
// engines with fewer tiers: the event must still run.
func TestRetryTopicsBeyondConfiguredTiers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delays []time.Duration
	}{
		{"one tier", []time.Duration{200 * time.Millisecond}},
		{"none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			retry2 := consumer.RetryTopic(topic, 2)
			e.createTopic(retry2, 1)
			m := payment("r2", "acct-5", ledger.TypeCaptured, 25)
			for _, h := range [][2]string{
				{consumer.HeaderOriginalTopic, topic},
				{consumer.HeaderOriginalPartition, "0"},
				{consumer.HeaderOriginalOffset, "0"},
				{consumer.HeaderConsumerGroup, "ledger"},
				{consumer.HeaderRetryTier, "2"},
				{consumer.HeaderNotBefore, time.Now().UTC().Format(time.RFC3339Nano)},
			} {
				m.Headers = append(m.Headers, kafka.Header{Key: h[0], Value: []byte(h[1])})
			}
			e.write(e.writerFor(retry2, &kafka.Hash{}), m)

			router, _ := newCountingRouter(t, nil)
			en := e.start(options{router: router, configure: func(cfg *consumer.Config) { cfg.RetryDelays = tc.delays }})
			// A control event on the source topic: the engine is up and
			// assigned its partitions once it is processed.
			e.publish(payment("control", "acct-c", ledger.TypeCaptured, 1))
			waitFor(t, 20*time.Second, "the control event processed", func() bool { return e.balance("acct-c") == 1 })
			deadline := time.Now().Add(8 * time.Second)
			for e.balance("acct-5") != 25 {
				if time.Now().After(deadline) {
					t.Fatalf("the event on %s never ran (balance of acct-5 = %d, want 25) with %d retry tiers configured: "+
						"a retry topic beyond the configured tiers is not read", retry2, e.balance("acct-5"), len(tc.delays))
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The balance is written by the completion; the event is
			// counted when it is finished, just after.
			waitFor(t, 5*time.Second, "both events counted as processed", func() bool {
				return en.finished(consumer.OutcomeProcessed) == 2
			})
		})
	}
}

// TestDeadLetterAtSizeLimit consumes a message within every size limit that
// cannot be decoded, so big that its dead letter (the value and fleet's
// headers) would exceed the broker's limit: the dead letter must still be
// written (without the value) and the partition move on.
func TestDeadLetterAtSizeLimit(t *testing.T) {
	e := newEnv(t, 1)
	// Within fleet's MaxMessageBytes (1 MiB, key+value+headers) and the
	// broker's max.message.bytes (1048588 for the whole record batch);
	// fleet's ~10 headers on top of it do not fit.
	big := kafka.Message{Value: bytes.Repeat([]byte("x"), 1<<20-256)}
	e.write(e.writerFor(topic, &kafka.Hash{}), big)
	e.publish(payment("after-big", "acct-6", ledger.TypeCaptured, 6))

	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router})
	waitFor(t, 20*time.Second, "the event behind processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	deadline := time.Now().Add(12 * time.Second)
	for e.committed("ledger", 1) != 2 {
		if time.Now().After(deadline) {
			var last string
			if errs := en.Status().LastErrors; len(errs) > 0 {
				last = errs[0].What + ": " + errs[0].Error
			}
			t.Fatalf("committed offset %d, want 2 (the end of the partition): the oversized dead letter is never written "+
				"(%v publish errors; last: %s)", e.committed("ledger", 1), en.value("fleet_consumer_publish_errors_total"), last)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := e.dlq(1)[0]
	if len(m.Value) != 0 {
		t.Errorf("dead letter value of %d bytes, want none", len(m.Value))
	}
	want := map[string]string{consumer.HeaderOriginalTopic: topic, consumer.HeaderOriginalPartition: "0", consumer.HeaderOriginalOffset: "0",
		consumer.HeaderDropped: "value", consumer.HeaderErrorKind: consumer.ReasonDecode}
	for k, v := range want {
		if got := headerValue(m, k); got != v {
			t.Errorf("dead letter header %s = %q, want %q", k, got, v)
		}
	}
}

// TestRetryTooLargeDeadLettered fails an event whose message is just under
// the size limit: its retry message would not fit its retry topic, so it is
// dead-lettered at once (reason retry_too_large, without its value) rather
// than retried for ever, and the partition moves on.
func TestRetryTooLargeDeadLettered(t *testing.T) {
	e := newEnv(t, 1)
	pad := strings.Repeat("x", 1<<20-1024)
	big := payment("big", "acct-8", ledger.TypeCaptured, 1)
	big.Value = []byte(`{"account":"acct-8","amount_cents":1,"pad":"` + pad + `"}`)
	e.write(e.writerFor(topic, &kafka.Hash{}), big)
	e.publish(payment("after-big", "acct-8", ledger.TypeCaptured, 6))
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "big" {
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{100 * time.Millisecond}
	}})
	waitFor(t, 20*time.Second, "both finished and committed", func() bool { return e.committed("ledger", 1) == 2 })
	m := e.dlq(1)[0]
	want := map[string]string{consumer.HeaderErrorKind: consumer.ReasonRetryTooLarge, consumer.HeaderDropped: "value", "ce_id": "big"}
	for k, v := range want {
		if got := headerValue(m, k); got != v {
			t.Errorf("dead letter header %s = %q, want %q", k, got, v)
		}
	}
	if got := e.balance("acct-8"); got != 6 {
		t.Errorf("balance %d, want 6", got)
	}
	if n := en.finished(consumer.OutcomeRetried); n != 0 {
		t.Errorf("%d retried: the retry message cannot be written", n)
	}
}

// TestRetryKeepsSourcePartition writes a failing event to a partition its key
// does not hash to: its retry must stay on that partition number, so that it
// keeps its place among the events of the partition it came from.
func TestRetryKeepsSourcePartition(t *testing.T) {
	e := newEnv(t, 4)
	const part = 3
	key := ""
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("acct-7-%d", i)
		if (&kafka.Hash{}).Balance(kafka.Message{Key: []byte(k)}, 0, 1, 2, 3) != part {
			key = k
		}
	}
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error { return errDownstream })
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{time.Hour}
	}})
	w := e.writerFor(topic, kafka.BalancerFunc(func(kafka.Message, ...int) int { return part }))
	e.write(w, payment("p7", key, ledger.TypeCaptured, 7))
	waitFor(t, 20*time.Second, "the event sent to retry tier 1", func() bool { return en.finished(consumer.OutcomeRetried) == 1 })
	m := e.read(consumer.RetryTopic(topic, 1), 1)[0]
	if got := headerValue(m, consumer.HeaderOriginalPartition); got != strconv.Itoa(part) {
		t.Fatalf("original partition header %q, want %d (harness check)", got, part)
	}
	if m.Partition != part {
		t.Errorf("retry of an event from %s[%d] written to %s[%d], want partition %d (key %q hashes to %d)",
			topic, part, m.Topic, m.Partition, part, key, m.Partition)
	}
}

// TestRetryGroupCheckedBeforeWait runs two consumer groups on one topic with
// different retry delays: a group's retry must not wait for another group's
// message's not-before time on the shared retry topic.
func TestRetryGroupCheckedBeforeWait(t *testing.T) {
	e := newEnv(t, 1)
	failOnce := func(c *idCounter) func(context.Context, handlers.Event) error {
		return func(_ context.Context, ev handlers.Event) error {
			if c.inc(ev.ID) == 1 {
				return errDownstream
			}
			return nil
		}
	}
	var slowCalls, fastCalls idCounter
	slowRouter, _ := newCountingRouter(t, failOnce(&slowCalls))
	fastRouter, _ := newCountingRouter(t, failOnce(&fastCalls))
	tiers := func(d time.Duration) func(*consumer.Config) {
		return func(cfg *consumer.Config) {
			cfg.InPlaceAttempts = 1
			cfg.RetryDelays = []time.Duration{d}
		}
	}
	slow := e.start(options{group: "slowgroup", router: slowRouter, configure: tiers(20 * time.Second)})
	e.publish(payment("a", "acct-8", ledger.TypeCaptured, 8))
	waitFor(t, 20*time.Second, "slowgroup's retry written", func() bool { return slow.finished(consumer.OutcomeRetried) == 1 })
	slowDue := time.Now().Add(20 * time.Second)

	fast := e.start(options{group: "fastgroup", router: fastRouter, configure: tiers(200 * time.Millisecond)})
	waitFor(t, 20*time.Second, "fastgroup's retry written", func() bool { return fast.finished(consumer.OutcomeRetried) == 1 })
	written := time.Now()
	deadline := written.Add(10 * time.Second)
	for fastCalls.get("a") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("fastgroup's retry of a (due 200ms after %s) has not run after %v: it waits behind slowgroup's message, due at about %s",
				written.Format("15:04:05.000"), time.Since(written).Round(time.Millisecond), slowDue.Format("15:04:05.000"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if slowCalls.get("a") != 1 {
		t.Errorf("slowgroup ran a %d times before its retry was due", slowCalls.get("a"))
	}
}

// TestJSONReserialisedIsDuplicate redelivers an event whose JSON data a
// producer re-serialised (other key order, spaces): same event, so a
// duplicate, not a conflict.
func TestJSONReserialisedIsDuplicate(t *testing.T) {
	e := newEnv(t, 1)
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router})
	e.publish(payment("j1", "acct-9", ledger.TypeCaptured, 100))
	waitFor(t, 20*time.Second, "the first copy processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	again := payment("j1", "acct-9", ledger.TypeCaptured, 100)
	again.Value = []byte(`{ "amount_cents": 100, "account": "acct-9" }`)
	e.publish(again)
	waitFor(t, 20*time.Second, "the second copy finished", func() bool { return en.finished("") == 2 })
	if got := en.finished(consumer.OutcomeDuplicate); got != 1 {
		t.Errorf("the re-serialised copy: %d duplicates, want 1 (%d conflicts, %d dead-lettered): same JSON data, same event",
			got, en.finished(consumer.OutcomeConflict), en.finished(consumer.OutcomeDeadLettered))
	}
	if got := en.finished(consumer.OutcomeConflict) + en.finished(consumer.OutcomeDeadLettered); got != 0 {
		t.Errorf("%d dead letters, want none", got)
	}
	if got := e.balance("acct-9"); got != 100 {
		t.Errorf("balance of acct-9 = %d, want 100", got)
	}
}

// TestResentClaimIsTheSameClaim makes the engine's first claim time out on
// the client while Redis still runs it (DEBUG SLEEP holds the server past
// the client's read timeout; the claim is in its socket and runs when it
// wakes): the claim the engine sends again must be recognised as the same
// claim, not find its own first claim busy, wait out its lease and take it
// over at the cost of an attempt.
func TestResentClaimIsTheSameClaim(t *testing.T) {
	e := newEnvWith(t, 1, 1, "--enable-debug-command", "yes")
	router, counts := newCountingRouter(t, nil)
	// A client that gives up after 150 ms and never resends on its own: the
	// engine's retry is what is tried here.
	impatient := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ReadTimeout: 150 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = impatient.Close() })
	en := e.start(options{router: router, store: impatient})
	e.publish(payment("warm", "acct-w", ledger.TypeCaptured, 1))
	waitFor(t, 20*time.Second, "the engine running", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })

	frozen := make(chan error, 1)
	go func() { frozen <- e.redis.Client(t).Do(context.Background(), "DEBUG", "SLEEP", "1").Err() }()
	probe := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	waitFor(t, 10*time.Second, "Redis frozen", func() bool { return probe.Ping(context.Background()).Err() != nil })
	start := time.Now()
	e.publish(payment("resent", "acct-r", ledger.TypeCaptured, 9))
	if err := <-frozen; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	waitFor(t, 20*time.Second, "the event processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 2 })
	took := time.Since(start)

	rec, err := en.store.Inspect(context.Background(), dedupe.Key("ledger", "acct-r", "payments-api", "resent"))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Attempts != 1 || rec.Fence != 1 {
		t.Errorf("record %+v: want attempt 1 at fence 1: the resent claim is the first one", rec)
	}
	if n := en.value("fleet_store_takeovers_total"); n != 0 {
		t.Errorf("%v takeovers, want none: the engine took its own claim over (after %v)", n, took)
	}
	if n := counts.callCount(); n != 2 {
		t.Errorf("handler called %d times, want 2 (one per event)", n)
	}
	if got := e.balance("acct-r"); got != 9 {
		t.Errorf("balance %d, want 9", got)
	}
}

// TestDrainGivesBackUnansweredClaims stops the engine while a claim's
// answer is lost (the client timed out while Redis slept): the drain asks
// again with the same owner tokens and gives the claims back, so the next
// owner finds the event released with its attempt returned, not held by an
// orphan for a whole lease.
func TestDrainGivesBackUnansweredClaims(t *testing.T) {
	e := newEnvWith(t, 1, 1, "--enable-debug-command", "yes")
	router, _ := newCountingRouter(t, nil)
	impatient := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ReadTimeout: 150 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = impatient.Close() })
	en := e.start(options{router: router, store: impatient, lease: time.Minute})
	e.publish(payment("warm", "acct-w", ledger.TypeCaptured, 1))
	waitFor(t, 20*time.Second, "the engine running", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })

	frozen := make(chan error, 1)
	go func() { frozen <- e.redis.Client(t).Do(context.Background(), "DEBUG", "SLEEP", "1").Err() }()
	probe := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	waitFor(t, 10*time.Second, "Redis frozen", func() bool { return probe.Ping(context.Background()).Err() != nil })
	e.publish(payment("cut", "acct-c", ledger.TypeCaptured, 9))
	waitFor(t, 10*time.Second, "the claim timed out", func() bool { return en.value("fleet_store_errors_total") > 0 })
	en.stop()
	if err := <-frozen; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	rec, err := en.store.Inspect(context.Background(), dedupe.Key("ledger", "acct-c", "payments-api", "cut"))
	if err != nil {
		t.Fatalf("the claim never reached Redis: %v", err)
	}
	if rec.State != dedupe.StateReleased || rec.Attempts != 0 {
		t.Errorf("record %+v: want released with its attempt given back, not held for a minute by a claim nobody answers for", rec)
	}
	if got := e.balance("acct-c"); got != 0 {
		t.Errorf("balance %d: the handler ran during the drain", got)
	}
}

// TestFailoverKeepsCompletions runs the engine on a Redis master with one
// replica and --redis-min-replicas 1. The replica is cut off (a network
// partition) while handlers run: the master applies their completions
// alone, so the engine must not count them finished, commit nothing past
// them, and say why it is not ready. Then the master dies and the replica
// takes over with what it has: the events are claimed again there, run,
// reach the new replica, and every balance is exact. With the master's word
// alone, their offsets would have been committed and their effects lost.
func TestFailoverKeepsCompletions(t *testing.T) {
	e := newEnv(t, 2)
	replica := redistest.StartReplica(t, e.redis)
	s := newStream(400, 20, 11)
	second := map[string]bool{}
	for _, m := range s.unique[200:] {
		second[headerValue(m, "ce_id")] = true
	}
	gate, entered := make(chan struct{}), make(chan struct{}, 400)
	router, _ := newCountingRouter(t, func(ctx context.Context, ev handlers.Event) error {
		if second[ev.ID] {
			entered <- struct{}{}
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	en := e.start(options{router: router, minReplicas: 1, lease: 2 * time.Second})
	e.publish(s.unique[:200]...)
	waitFor(t, 30*time.Second, "the first half committed", func() bool { return e.committed("ledger", 2) == 200 })

	e.publish(s.unique[200:]...)
	<-entered // claims reached the replica; handlers run
	replica.Detach()
	close(gate)
	waitFor(t, 30*time.Second, "not ready: not replicated", func() bool {
		err := en.Ready()
		return err != nil && strings.Contains(err.Error(), "not replicated")
	})
	waitFor(t, 30*time.Second, "completions applied on the master alone", func() bool {
		for _, m := range s.unique[200:] {
			rec, err := en.store.Inspect(context.Background(), dedupe.Key("ledger", string(m.Key), "payments-api", headerValue(m, "ce_id")))
			if err == nil && rec.State == dedupe.StateDone {
				return true
			}
		}
		return false
	})
	if got := e.committed("ledger", 2); got != 200 {
		t.Fatalf("committed %d offsets, want 200: nothing past a completion the replica lacks", got)
	}

	e.redis.Stop() // the master dies; the replica never got the second half
	e.redis.TakeOver(replica)
	waitFor(t, 60*time.Second, "everything committed after the failover", func() bool { return e.committed("ledger", 2) == 400 })
	got := e.balances(s.accounts)
	for _, a := range s.accounts {
		if got[a] != s.want[a] {
			t.Errorf("balance of %s = %d, want %d", a, got[a], s.want[a])
		}
	}
}

// TestForgedFleetHeaders publishes an event carrying fleet's own headers in
// other spellings, as a hostile producer would: a not-before time in 2099,
// another consumer group, another origin. Its handler fails once, so it goes
// through a retry tier: it must run there after the tier's delay, be counted
// as this group's, and its retry message must carry only fleet's headers.
func TestForgedFleetHeaders(t *testing.T) {
	e := newEnv(t, 1)
	var c idCounter
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if c.inc(ev.ID) == 1 {
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{200 * time.Millisecond}
	}})
	m := payment("forged", "acct-f", ledger.TypeCaptured, 4)
	m.Headers = append(m.Headers,
		kafka.Header{Key: "FLEET-NOT-BEFORE", Value: []byte("2099-01-01T00:00:00Z")},
		kafka.Header{Key: "Fleet-Consumer-Group", Value: []byte("nobody")},
		kafka.Header{Key: "fleet-Original-Topic", Value: []byte("elsewhere")})
	e.publish(m)
	waitFor(t, 20*time.Second, "the event run from its retry tier", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	if n := en.finished(consumer.OutcomeOtherGroup); n != 0 {
		t.Errorf("%d counted as another group's", n)
	}
	if got := e.balance("acct-f"); got != 4 {
		t.Errorf("balance %d, want 4", got)
	}
	r := e.read(consumer.RetryTopic(topic, 1), 1)[0]
	for _, h := range r.Headers {
		if strings.HasPrefix(strings.ToLower(h.Key), "fleet-") && h.Key != strings.ToLower(h.Key) {
			t.Errorf("the retry message kept the producer's %s: %s", h.Key, h.Value)
		}
	}
	if got := headerValue(r, consumer.HeaderOriginalTopic); got != topic {
		t.Errorf("original topic %q, want %q", got, topic)
	}
}

// TestDuplicateWaitsForReplicas: an event completed on the master alone (the
// replica cut off while its handler ran) is not committed by its worker,
// which then stops; the partition's next owner finds the event done, but a
// duplicate answer lets it commit, so it must wait for the replica too. It
// reports not ready instead, and when the master dies and the replica takes
// over, the event is run again there: nothing committed is lost.
func TestDuplicateWaitsForReplicas(t *testing.T) {
	e := newEnv(t, 1)
	replica := redistest.StartReplica(t, e.redis)
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	router, _ := newCountingRouter(t, func(ctx context.Context, ev handlers.Event) error {
		if ev.ID == "p1" {
			once.Do(func() {
				entered <- struct{}{}
				<-gate
			})
		}
		return nil
	})
	a := e.start(options{router: router, minReplicas: 1, lease: 2 * time.Second})
	e.publish(payment("warm", "acct-w", ledger.TypeCaptured, 1))
	waitFor(t, 30*time.Second, "the warm-up committed", func() bool { return e.committed("ledger", 1) == 1 })

	e.publish(payment("p1", "acct-1", ledger.TypeCaptured, 100))
	<-entered
	replica.Detach()
	close(gate)
	key := dedupe.Key("ledger", "acct-1", "payments-api", "p1")
	waitFor(t, 30*time.Second, "p1 done on the master alone", func() bool {
		rec, err := a.store.Inspect(context.Background(), key)
		return err == nil && rec.State == dedupe.StateDone
	})
	a.stop()
	b := e.start(options{router: router, minReplicas: 1, lease: 2 * time.Second})
	waitFor(t, 30*time.Second, "the next owner not ready: not replicated", func() bool {
		err := b.Ready()
		return err != nil && strings.Contains(err.Error(), "not replicated")
	})
	if got := e.committed("ledger", 1); got != 1 {
		t.Fatalf("committed %d offsets, want 1: p1's completion is on the master alone", got)
	}
	if n := b.finished(consumer.OutcomeDuplicate); n != 0 {
		t.Fatalf("p1 acknowledged as a duplicate of a completion the replica lacks")
	}
	e.redis.Stop()
	e.redis.TakeOver(replica)
	waitFor(t, 60*time.Second, "p1 committed after the failover", func() bool { return e.committed("ledger", 1) == 2 })
	if got := e.balance("acct-1"); got != 100 {
		t.Errorf("balance %d, want 100: p1 lost in the failover", got)
	}
}

// TestRetryWithinOwnLimits: an event just within the header limit goes to a
// retry tier, where fleet's own headers would put it over the limit: they do
// not count there, so it runs again rather than being dead-lettered by
// fleet's own additions.
func TestRetryWithinOwnLimits(t *testing.T) {
	e := newEnv(t, 1)
	var c idCounter
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if c.inc(ev.ID) == 1 {
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{200 * time.Millisecond}
		cfg.MaxHeaders = 6 // the payment has 5; its retry message 16
	}})
	e.publish(payment("h1", "acct-h", ledger.TypeCaptured, 10))
	waitFor(t, 20*time.Second, "h1 processed from its retry tier", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	if n := en.finished(consumer.OutcomeDeadLettered); n != 0 {
		t.Errorf("%d dead-lettered: fleet's own headers counted against the limit", n)
	}
	if got := e.balance("acct-h"); got != 10 {
		t.Errorf("balance %d, want 10", got)
	}
}

// TestUnclaimableEventDeadLettered: an event the store can never claim (its
// record key holds something else) is dead-lettered as invalid_record, and
// the events around it, of any key, run: it does not wedge its partition
// or fail the claims batched with it.
func TestUnclaimableEventDeadLettered(t *testing.T) {
	e := newEnv(t, 1)
	router, _ := newCountingRouter(t, nil)
	if err := e.rdb.Set(context.Background(), dedupe.Key("ledger", "acct-2", "payments-api", "clobbered"), "not a record", 0).Err(); err != nil {
		t.Fatal(err)
	}
	e.start(options{router: router})
	e.publish(payment("before", "acct-1", ledger.TypeCaptured, 1), payment("clobbered", "acct-2", ledger.TypeCaptured, 5),
		payment("after", "acct-1", ledger.TypeCaptured, 2))
	waitFor(t, 20*time.Second, "all three committed", func() bool { return e.committed("ledger", 1) == 3 })
	if got := e.balance("acct-1"); got != 3 {
		t.Errorf("balance %d, want 3", got)
	}
	if got := headerValue(e.dlq(1)[0], consumer.HeaderErrorKind); got != consumer.ReasonInvalidRecord {
		t.Errorf("dead letter reason %q, want invalid_record", got)
	}
}

// TestWaitingRetryCountsAsLag: while an event waits in a retry tier for its
// time, its retry partition shows it as lag (offsets and seconds), so that
// a retry partition that stalls is seen.
func TestWaitingRetryCountsAsLag(t *testing.T) {
	e := newEnv(t, 1)
	var c idCounter
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if c.inc(ev.ID) == 1 {
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{5 * time.Second}
	}})
	e.publish(payment("waits", "acct-l", ledger.TypeCaptured, 1))
	retry := consumer.RetryTopic(topic, 1)
	waitFor(t, 20*time.Second, "the waiting retry shown as lag", func() bool {
		for _, p := range en.Status().Partitions {
			if p.Topic == retry && p.Lag >= 1 && p.TimeLagSeconds > 0 {
				return true
			}
		}
		return false
	})
	if en.finished(consumer.OutcomeProcessed) != 0 {
		t.Fatal("processed before its retry delay")
	}
	waitFor(t, 20*time.Second, "processed after the delay", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
}
