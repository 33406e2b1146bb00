package consumer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// stream is a generated ledger workload with its expected balances.
type stream struct {
	unique   []kafka.Message
	accounts []string
	want     map[string]int64
}

func newStream(n, accounts int, seed uint64) stream {
	r := rand.New(rand.NewPCG(seed, seed+1))
	s := stream{want: map[string]int64{}}
	for i := range accounts {
		s.accounts = append(s.accounts, fmt.Sprintf("acct-%03d", i))
	}
	for i := range n {
		acct := s.accounts[r.IntN(accounts)]
		cents := int64(1 + r.IntN(10_000))
		typ := ledger.TypeCaptured
		if r.IntN(4) == 0 {
			typ = ledger.TypeRefunded
			s.want[acct] -= cents
		} else {
			s.want[acct] += cents
		}
		s.unique = append(s.unique, payment(fmt.Sprintf("evt-%d-%06d", seed, i), acct, typ, cents))
	}
	return s
}

// TestDuplicatesAppliedOnce publishes 10,000 ledger events over 200 accounts
// and republishes 30 % of them with the same id: some right behind the
// original (in flight together), some after the originals completed. Every
// balance must equal the sum of the unique events, and the handler must have
// succeeded once per unique event.
func TestDuplicatesAppliedOnce(t *testing.T) {
	e := newEnv(t, 8)
	router, counts := newCountingRouter(t, nil)
	s := newStream(10_000, 200, 1)
	r := rand.New(rand.NewPCG(7, 8))

	// First wave: originals, with 15 % of them republished right behind.
	var first []kafka.Message
	var later []kafka.Message
	for _, m := range s.unique {
		first = append(first, m)
		switch x := r.IntN(100); {
		case x < 15:
			first = append(first, m)
		case x < 30:
			later = append(later, m)
		}
	}
	en := e.start(options{router: router})
	e.publish(first...)
	waitFor(t, 60*time.Second, "first wave finished", func() bool { return en.finished("") >= len(first) })

	// Second wave: duplicates of events that completed long ago.
	e.publish(later...)
	total := len(first) + len(later)
	waitFor(t, 60*time.Second, "second wave finished", func() bool { return en.finished("") >= total })

	if got := en.finished(consumer.OutcomeProcessed); got != len(s.unique) {
		t.Errorf("processed %d events, want %d", got, len(s.unique))
	}
	if got, want := en.finished(consumer.OutcomeDuplicate), total-len(s.unique); got != want {
		t.Errorf("duplicates %d, want %d", got, want)
	}
	counts.mu.Lock()
	for _, m := range s.unique {
		id := headerValue(m, "ce_id")
		if n := counts.runs[id]; n != 1 {
			t.Errorf("event %s: handler succeeded %d times", id, n)
		}
	}
	counts.mu.Unlock()
	got := e.balances(s.accounts)
	for _, a := range s.accounts {
		if got[a] != s.want[a] {
			t.Errorf("balance of %s = %d, want %d", a, got[a], s.want[a])
		}
	}
	t.Logf("%d messages (%d unique, %d duplicates) over %d accounts: balances exact",
		total, len(s.unique), total-len(s.unique), len(s.accounts))
}

// TestPoisonGoesToDeadLetterTopic checks each kind of bad input lands in the
// dead-letter topic with its reason, while the partition keeps flowing.
func TestPoisonGoesToDeadLetterTopic(t *testing.T) {
	e := newEnv(t, 1)
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router})

	noID := payment("x", "acct-1", ledger.TypeCaptured, 5)
	noID.Headers = dropHeader(noID.Headers, "ce_id")
	unknown := payment("u-1", "acct-1", "payment.voided", 5)
	negative := payment("n-1", "acct-1", ledger.TypeCaptured, 5)
	negative.Value = []byte(`{"account":"acct-1","amount_cents":-5}`)
	original := payment("c-1", "acct-1", ledger.TypeCaptured, 100)
	reused := payment("c-1", "acct-1", ledger.TypeCaptured, 999)
	poison := []struct {
		msg    kafka.Message
		reason string
	}{
		{kafka.Message{Key: []byte("acct-1"), Value: []byte("\x00\x01 not an event")}, consumer.ReasonDecode},
		{noID, consumer.ReasonDecode},
		{unknown, consumer.ReasonUnknownType},
		{negative, consumer.ReasonPermanent},
		{reused, consumer.ReasonConflict},
	}
	e.publish(original)
	waitFor(t, 20*time.Second, "original processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	for _, p := range poison {
		e.publish(p.msg)
	}
	after := payment("ok-1", "acct-1", ledger.TypeCaptured, 7)
	e.publish(after)
	waitFor(t, 20*time.Second, "every message finished", func() bool { return en.finished("") == len(poison)+2 })

	if got := e.balances([]string{"acct-1"})["acct-1"]; got != 107 {
		t.Errorf("balance = %d, want 107: the event after the poison must be processed and the conflicting one not", got)
	}
	letters := e.dlq(len(poison))
	for i, p := range poison {
		m := letters[i]
		if got := headerValue(m, consumer.HeaderErrorKind); got != p.reason {
			t.Errorf("dead letter %d: kind %q, want %q (message %q)", i, got, p.reason, headerValue(m, consumer.HeaderErrorMessage))
		}
		if string(m.Value) != string(p.msg.Value) || string(m.Key) != string(p.msg.Key) {
			t.Errorf("dead letter %d: key/value changed", i)
		}
		for _, h := range []string{consumer.HeaderOriginalTopic, consumer.HeaderOriginalPartition, consumer.HeaderOriginalOffset,
			consumer.HeaderConsumerGroup, consumer.HeaderErrorMessage, consumer.HeaderAttempts,
			consumer.HeaderFirstFailure, consumer.HeaderLastFailure} {
			if headerValue(m, h) == "" {
				t.Errorf("dead letter %d (%s): header %s missing", i, p.reason, h)
			}
		}
		if got := headerValue(m, consumer.HeaderOriginalTopic); got != topic {
			t.Errorf("dead letter %d: original topic %q", i, got)
		}
		if got := headerValue(m, consumer.HeaderOriginalOffset); got != fmt.Sprint(i+1) {
			t.Errorf("dead letter %d: original offset %s, want %d", i, got, i+1)
		}
	}
}

// TestFlakyHandlerAppliedOnce fails a handler twice, then lets it succeed:
// the effect is applied once and the attempts are counted in the store.
func TestFlakyHandlerAppliedOnce(t *testing.T) {
	e := newEnv(t, 1)
	failures := 0
	router, counts := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "flaky" && failures < 2 {
			failures++
			return fmt.Errorf("downstream unavailable (failure %d)", failures)
		}
		return nil
	})
	en := e.start(options{router: router})
	e.publish(payment("flaky", "acct-9", ledger.TypeCaptured, 250))
	waitFor(t, 20*time.Second, "event processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	if got := e.balances([]string{"acct-9"})["acct-9"]; got != 250 {
		t.Fatalf("balance = %d, want 250", got)
	}
	if calls := counts.callCount(); calls != 3 {
		t.Errorf("handler called %d times, want 3", calls)
	}
	if r := en.value("fleet_consumer_retries_total"); r != 2 {
		t.Errorf("retries = %v, want 2", r)
	}
}

// TestHandlerTimeoutRetries lets a handler overrun its timeout once: its
// context ends at the deadline, the attempt counts as a retryable failure,
// and the next attempt applies the effect once.
func TestHandlerTimeoutRetries(t *testing.T) {
	e := newEnv(t, 1)
	var overran atomic.Bool
	router, counts := newCountingRouter(t, func(ctx context.Context, _ handlers.Event) error {
		if !overran.Swap(true) {
			<-ctx.Done() // past the handler timeout
			return ctx.Err()
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(c *consumer.Config) { c.HandlerTimeout = 200 * time.Millisecond }})
	e.publish(payment("slow", "acct-3", ledger.TypeCaptured, 700))
	waitFor(t, 20*time.Second, "event processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	if got := e.balances([]string{"acct-3"})["acct-3"]; got != 700 {
		t.Fatalf("balance = %d, want 700", got)
	}
	if n := counts.runs["slow"]; n != 1 {
		t.Errorf("ledger handler completed %d times, want 1", n)
	}
	if r := en.value("fleet_consumer_retries_total"); r != 1 {
		t.Errorf("retries = %v, want 1", r)
	}
}

// TestInFlightBytesCapped publishes events whose bytes exceed a partition's
// in-flight byte budget: the engine takes in only what fits, and the rest
// follows as handlers finish.
func TestInFlightBytesCapped(t *testing.T) {
	e := newEnv(t, 1)
	var msgs []kafka.Message
	size := 0
	for i := range 20 {
		m := payment(fmt.Sprintf("big-%d", i), fmt.Sprintf("acct-%d", i), ledger.TypeCaptured, 100)
		size = len(m.Key) + len(m.Value)
		for _, h := range m.Headers {
			size += len(h.Key) + len(h.Value)
		}
		msgs = append(msgs, m)
	}
	e.publish(msgs...)
	const fits = 3
	gate := make(chan struct{})
	var started sync.WaitGroup
	started.Add(1)
	var once sync.Once
	router, counts := newCountingRouter(t, func(context.Context, handlers.Event) error {
		once.Do(started.Done)
		<-gate
		return nil
	})
	en := e.start(options{router: router, configure: func(c *consumer.Config) {
		c.MaxInFlightBytes = int64(fits*size + size/2)
	}})
	var release sync.Once
	open := func() { release.Do(func() { close(gate) }) }
	t.Cleanup(open) // before the engine stops, even when the test fails
	started.Wait()
	if n := en.value("fleet_consumer_in_flight_events"); n > fits {
		t.Fatalf("%v events in flight with room for %d", n, fits)
	}
	open()
	waitFor(t, 20*time.Second, "all events processed", func() bool { return en.finished(consumer.OutcomeProcessed) == len(msgs) })
	if calls := counts.callCount(); calls != len(msgs) {
		t.Errorf("handler called %d times, want %d", calls, len(msgs))
	}
}

func dropHeader(hs []kafka.Header, key string) []kafka.Header {
	var out []kafka.Header
	for _, h := range hs {
		if h.Key != key {
			out = append(out, h)
		}
	}
	return out
}

// TestRedisOutageFailsClosed stops Redis mid-stream: no handler runs while it
// is down, the engine reports not ready, and processing resumes by itself
// once Redis is back, with exact balances.
func TestRedisOutageFailsClosed(t *testing.T) {
	e := newEnv(t, 4)
	router, counts := newCountingRouter(t, nil)
	en := e.start(options{router: router})
	s := newStream(3000, 50, 3)
	half := len(s.unique) / 2
	e.publish(s.unique[:half]...)
	waitFor(t, 30*time.Second, "first half finished", func() bool { return en.finished("") >= half })
	if err := en.Ready(); err != nil {
		t.Fatalf("not ready before the outage: %v", err)
	}

	// SHUTDOWN SAVE keeps the data, as a persistent Redis would across a
	// restart; the scripts are gone afterwards (NOSCRIPT is then survived).
	_ = e.rdb.ShutdownSave(context.Background()).Err()
	e.redis.Stop()
	waitFor(t, 10*time.Second, "not ready", func() bool { return en.Ready() != nil })
	calls := counts.callCount()
	errsBefore := en.value("fleet_store_errors_total")
	e.publish(s.unique[half:]...)
	// A partition whose claim is refused stops there: it does not fetch on.
	waitFor(t, 30*time.Second, "second half arriving", func() bool {
		return en.value("fleet_consumer_events_received_total") > float64(half)
	})
	waitFor(t, 30*time.Second, "claims refused by the outage", func() bool {
		return en.value("fleet_store_errors_total") >= errsBefore+3
	})
	if got := counts.callCount(); got != calls {
		t.Fatalf("handler ran %d times while Redis was down", got-calls)
	}
	if en.finished("") != half {
		t.Fatalf("%d events finished while Redis was down", en.finished("")-half)
	}

	e.redis.Restart()
	waitFor(t, 60*time.Second, "second half finished", func() bool { return en.finished("") >= len(s.unique) })
	waitFor(t, 10*time.Second, "ready again", func() bool { return en.Ready() == nil })
	got := e.balances(s.accounts)
	for _, a := range s.accounts {
		if got[a] != s.want[a] {
			t.Errorf("balance of %s = %d, want %d", a, got[a], s.want[a])
		}
	}
	if p := en.finished(consumer.OutcomeProcessed); p != len(s.unique) {
		t.Errorf("processed %d, want %d", p, len(s.unique))
	}
}

// TestDrainOnShutdown stops an engine mid-stream and starts another: every
// event is applied exactly once across the two.
func TestDrainOnShutdown(t *testing.T) {
	e := newEnv(t, 4)
	router, _ := newCountingRouter(t, nil)
	s := newStream(4000, 100, 4)
	e.publish(s.unique...)
	first := e.start(options{router: router})
	waitFor(t, 30*time.Second, "some progress", func() bool { return first.finished("") >= 500 })
	start := time.Now()
	first.stop()
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("drain took %v, budget is 3s", took)
	}
	firstProcessed := first.finished(consumer.OutcomeProcessed)
	second := e.start(options{router: router})
	waitFor(t, 60*time.Second, "every balance exact", func() bool {
		got := e.balances(s.accounts)
		for _, a := range s.accounts {
			if got[a] != s.want[a] {
				return false
			}
		}
		return true
	})
	waitFor(t, 10*time.Second, "processed counts", func() bool {
		return firstProcessed+second.finished(consumer.OutcomeProcessed) >= len(s.unique)
	})
	if total := firstProcessed + second.finished(consumer.OutcomeProcessed); total != len(s.unique) {
		t.Errorf("processed %d times across both engines, want %d", total, len(s.unique))
	}
}

// TestKeysRunInOrder publishes interleaved events of a few keys, some of
// which fail once: each key's events run one at a time and in offset order,
// retries included, while different keys run at once.
func TestKeysRunInOrder(t *testing.T) {
	e := newEnv(t, 1)
	const keys, perKey = 20, 100
	var (
		mu      sync.Mutex
		running = map[string]bool{}
		last    = map[string]int{}
		failed  = map[string]bool{}
		errs    []string
	)
	// The first event of acct-000 holds its lane until another key starts:
	// the engine must run it alongside.
	other := make(chan struct{})
	var otherOnce sync.Once
	router, _ := newCountingRouter(t, func(ctx context.Context, ev handlers.Event) error {
		var seq int
		if _, err := fmt.Sscanf(ev.ID[len(ev.Key)+1:], "%d", &seq); err != nil {
			return err
		}
		mu.Lock()
		if running[ev.Key] {
			errs = append(errs, fmt.Sprintf("%s: event %d ran while another event of its key ran", ev.Key, seq))
		}
		if want := last[ev.Key] + 1; seq != want {
			errs = append(errs, fmt.Sprintf("%s: event %d ran after event %d", ev.Key, seq, want-1))
		}
		running[ev.Key] = true
		retry := seq%7 == 3 && !failed[ev.ID]
		failed[ev.ID] = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[ev.Key] = false
			if !retry {
				last[ev.Key] = seq
			}
			mu.Unlock()
		}()
		if ev.Key != "acct-000" {
			otherOnce.Do(func() { close(other) })
		} else if seq == 1 {
			select {
			case <-other:
			case <-ctx.Done():
				mu.Lock()
				errs = append(errs, "no other key ran while acct-000's first event ran")
				mu.Unlock()
				return ctx.Err()
			}
		}
		if retry {
			return fmt.Errorf("fails once: %s", ev.ID)
		}
		return nil
	})
	var msgs []kafka.Message
	want := map[string]int64{}
	var accounts []string
	for k := range keys {
		accounts = append(accounts, fmt.Sprintf("acct-%03d", k))
	}
	for seq := 1; seq <= perKey; seq++ {
		for _, acct := range accounts {
			msgs = append(msgs, payment(fmt.Sprintf("%s/%d", acct, seq), acct, ledger.TypeCaptured, int64(seq)))
			want[acct] += int64(seq)
		}
	}
	en := e.start(options{router: router, configure: func(c *consumer.Config) { c.HandlerTimeout = 10 * time.Second }})
	e.publish(msgs...)
	waitFor(t, 60*time.Second, "every event processed", func() bool { return en.finished(consumer.OutcomeProcessed) == len(msgs) })
	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		t.Error(err)
	}
	for acct, got := range e.balances(accounts) {
		if got != want[acct] {
			t.Errorf("balance of %s = %d, want %d", acct, got, want[acct])
		}
	}
}
