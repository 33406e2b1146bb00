package consumer_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// calls records when a handler ran for an event id.
type calls struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (c *calls) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = map[string][]time.Time{}
	}
	c.at[id] = append(c.at[id], time.Now())
}

func (c *calls) of(id string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.at[id]...)
}

var errDownstream = errors.New("downstream unavailable")

// TestRetryTiersThenDeadLetter fails one event's handler every time: it
// runs its in-place attempts on the source topic, then on each retry topic
// no earlier than that tier's delay, and lands in the dead-letter topic with
// every header. With --retry-order none, the event behind it on the same
// key does not wait for it (TestOrderedRetries has it wait).
func TestRetryTiersThenDeadLetter(t *testing.T) {
	e := newEnv(t, 2)
	var c calls
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		c.add(ev.ID)
		if ev.ID == "doomed" {
			return errDownstream
		}
		return nil
	})
	delays := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond}
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 2
		cfg.RetryDelays = delays
		cfg.MaxAttempts = 100
		cfg.RetryOrder = consumer.OrderNone
	}})
	e.publish(payment("doomed", "acct-1", ledger.TypeCaptured, 5), payment("behind", "acct-1", ledger.TypeCaptured, 7))

	waitFor(t, 30*time.Second, "dead-lettered after the last tier", func() bool { return en.finished(consumer.OutcomeDeadLettered) == 1 })
	if got := en.finished(consumer.OutcomeRetried); got != 2 {
		t.Errorf("retried %d times, want 2 (one per tier)", got)
	}
	if got := e.balances([]string{"acct-1"})["acct-1"]; got != 7 {
		t.Errorf("balance = %d, want 7", got)
	}
	runs := c.of("doomed")
	if len(runs) != 6 {
		t.Fatalf("handler ran %d times, want 2 per tier over 3 tiers", len(runs))
	}
	// Each tier runs no earlier than its delay after the tier before failed.
	for tier, d := range delays {
		if gap := runs[2*tier+2].Sub(runs[2*tier+1]); gap < d {
			t.Errorf("tier %d ran %v after the previous failure, before its delay %v", tier+1, gap, d)
		}
	}
	if behind := c.of("behind"); len(behind) != 1 || !behind[0].Before(runs[2]) {
		t.Errorf("the next event of the key waited for the retries: ran at %v, retries from %v", behind, runs[2])
	}

	for n := 1; n <= len(delays); n++ {
		m := e.read(consumer.RetryTopic(topic, n), 1)[0]
		if got := headerValue(m, consumer.HeaderRetryTier); got != strconv.Itoa(n) {
			t.Errorf("retry topic %d: tier header %q", n, got)
		}
		if got := headerValue(m, consumer.HeaderOriginalTopic); got != topic {
			t.Errorf("retry topic %d: original topic %q", n, got)
		}
		if _, err := time.Parse(time.RFC3339Nano, headerValue(m, consumer.HeaderNotBefore)); err != nil {
			t.Errorf("retry topic %d: not-before header: %v", n, err)
		}
		if got := headerValue(m, "ce_id"); got != "doomed" {
			t.Errorf("retry topic %d: ce_id %q, the CloudEvents headers must be kept", n, got)
		}
	}

	m := e.dlq(1)[0]
	want := map[string]string{
		consumer.HeaderOriginalTopic:  topic,
		consumer.HeaderOriginalOffset: "0",
		consumer.HeaderConsumerGroup:  "ledger",
		consumer.HeaderErrorKind:      consumer.ReasonAttemptsExhausted,
		consumer.HeaderErrorMessage:   errDownstream.Error(),
		consumer.HeaderAttempts:       "6",
		consumer.HeaderRetryTier:      "2",
		"ce_id":                       "doomed",
	}
	for k, v := range want {
		if got := headerValue(m, k); got != v {
			t.Errorf("dead letter header %s = %q, want %q", k, got, v)
		}
	}
	if headerValue(m, consumer.HeaderOriginalPartition) == "" {
		t.Error("dead letter has no original partition")
	}
	first, err1 := time.Parse(time.RFC3339Nano, headerValue(m, consumer.HeaderFirstFailure))
	last, err2 := time.Parse(time.RFC3339Nano, headerValue(m, consumer.HeaderLastFailure))
	if err1 != nil || err2 != nil || last.Sub(first) < delays[0]+delays[1] {
		t.Errorf("failure times %v .. %v (%v, %v): the first must be the first tier's", first, last, err1, err2)
	}
	if headerValue(m, consumer.HeaderNotBefore) != "" {
		t.Error("a dead letter carries no not-before time")
	}
}

// TestAttemptBudgetSurvivesRestart spends part of an event's attempt budget
// in one engine, which is then stopped; the next engine of the group runs
// the retry and dead-letters the event when the budget kept in its
// idempotency record runs out, not after a fresh budget.
func TestAttemptBudgetSurvivesRestart(t *testing.T) {
	e := newEnv(t, 1)
	var c calls
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		c.add(ev.ID)
		return errDownstream
	})
	configure := func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 2
		cfg.RetryDelays = []time.Duration{500 * time.Millisecond, 500 * time.Millisecond}
		cfg.MaxAttempts = 3
	}
	first := e.start(options{router: router, configure: configure})
	e.publish(payment("budget", "acct-2", ledger.TypeCaptured, 5))
	waitFor(t, 20*time.Second, "first delivery retried", func() bool { return first.finished(consumer.OutcomeRetried) == 1 })
	first.stop()

	second := e.start(options{router: router, configure: configure})
	waitFor(t, 20*time.Second, "dead-lettered", func() bool { return second.finished(consumer.OutcomeDeadLettered) == 1 })
	if n := len(c.of("budget")); n != 3 {
		t.Errorf("handler ran %d times over the restart, want the budget of 3", n)
	}
	m := e.dlq(1)[0]
	if got := headerValue(m, consumer.HeaderAttempts); got != "3" {
		t.Errorf("attempts header %q, want 3", got)
	}
	if got := headerValue(m, consumer.HeaderRetryTier); got != "1" {
		t.Errorf("dead-lettered from tier %q, want 1: the budget ran out there", got)
	}
}
