package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestOrderedRetries fails the first event of a key twice (transiently):
// it goes through two retry tiers, and the key's later events, parked
// behind it, run after it, in order, each once; another key's events do
// not wait.
func TestOrderedRetries(t *testing.T) {
	e := newEnv(t, 2)
	var c calls
	failures := 0
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		c.add(ev.ID)
		if ev.ID == "first" && failures < 2 {
			failures++ // one lane runs a key: no race
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{200 * time.Millisecond, 200 * time.Millisecond}
	}})
	e.publish(payment("first", "acct-1", ledger.TypeCaptured, 5), payment("second", "acct-1", ledger.TypeCaptured, 7),
		payment("third", "acct-1", ledger.TypeCaptured, 11), payment("elsewhere", "acct-2", ledger.TypeCaptured, 1))

	waitFor(t, 30*time.Second, "every event done", func() bool { return en.finished(consumer.OutcomeProcessed) == 4 })
	first, second, third := c.of("first"), c.of("second"), c.of("third")
	if len(first) != 3 || len(second) != 1 || len(third) != 1 {
		t.Fatalf("runs: first %d, second %d, third %d; want 3, 1, 1", len(first), len(second), len(third))
	}
	if !first[2].Before(second[0]) || !second[0].Before(third[0]) {
		t.Errorf("out of order: first's success %v, second %v, third %v", first[2], second[0], third[0])
	}
	if elsewhere := c.of("elsewhere"); len(elsewhere) != 1 || !elsewhere[0].Before(first[1]) {
		t.Errorf("another key waited for the retries: ran at %v, first's retry at %v", elsewhere, first[1])
	}
	if got := en.finished(consumer.OutcomeParked); got != 2 {
		t.Errorf("parked %d, want 2", got)
	}
	if got := en.value("fleet_order_released_events_total"); got != 2 {
		t.Errorf("released %v, want 2", got)
	}
	if got := e.balances([]string{"acct-1"})["acct-1"]; got != 23 {
		t.Errorf("balance = %d, want 23", got)
	}
	released := e.read(consumer.ParkedTopic(topic), 2)
	for i, id := range []string{"second", "third"} {
		if got := headerValue(released[i], "ce_id"); got != id {
			t.Errorf("parked topic message %d: ce_id %q, want %q", i, got, id)
		}
		if got := headerValue(released[i], consumer.HeaderOriginalTopic); got != topic {
			t.Errorf("parked topic message %d: original topic %q", i, got)
		}
	}
	if n := e.rdb.Keys(context.Background(), "fleet:order:*").Val(); len(n) != 0 {
		t.Errorf("gates left once the key drained: %v", n)
	}
}

// TestOrderedRetriesAfterDeadLetter dead-letters a key's head after its
// tiers: under continue (the default) the event behind it runs once the
// head is dead-lettered, not before.
func TestOrderedRetriesAfterDeadLetter(t *testing.T) {
	e := newEnv(t, 1)
	var c calls
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		c.add(ev.ID)
		if ev.ID == "doomed" {
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{100 * time.Millisecond}
	}})
	e.publish(payment("doomed", "acct-1", ledger.TypeCaptured, 5), payment("behind", "acct-1", ledger.TypeCaptured, 7))

	waitFor(t, 30*time.Second, "behind done", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	doomed, behind := c.of("doomed"), c.of("behind")
	if len(doomed) != 2 || len(behind) != 1 || !doomed[1].Before(behind[0]) {
		t.Fatalf("doomed ran at %v, behind at %v: behind must run once, after doomed's last run", doomed, behind)
	}
	if got := en.finished(consumer.OutcomeDeadLettered); got != 1 {
		t.Errorf("dead-lettered %d, want 1", got)
	}
}

// TestOrderedRetriesHold dead-letters a key's head under hold: the event
// behind it stays parked, the key shows as held on /status and in the
// gauges, and runs once the key is unblocked.
func TestOrderedRetriesHold(t *testing.T) {
	e := newEnv(t, 1)
	var c calls
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		c.add(ev.ID)
		if ev.ID == "doomed" {
			return handlers.Permanent(errDownstream)
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.OnDeadLetter = consumer.DeadLetterHold
		cfg.GateScanInterval = 20 * time.Millisecond
	}})
	e.publish(payment("doomed", "acct-1", ledger.TypeCaptured, 5), payment("behind", "acct-1", ledger.TypeCaptured, 7),
		payment("elsewhere", "acct-2", ledger.TypeCaptured, 1))

	waitFor(t, 30*time.Second, "the key held, its follower parked, on a scan of the gates", func() bool {
		s := en.Status().Gates
		return s != nil && s.Held == 1 && en.value("fleet_order_held_keys") == 1 && en.finished(consumer.OutcomeParked) == 1 &&
			len(s.Keys) == 1 && s.Keys[0].Parked == 1
	})
	if got := en.finished(consumer.OutcomeProcessed); got != 1 {
		t.Errorf("processed %d before the unblock, want 1 (elsewhere)", got)
	}
	keys := en.Status().Gates.Keys
	if len(keys) != 1 || keys[0].Key != "acct-1" || keys[0].State != "held" || keys[0].Parked != 1 || keys[0].Topic != topic {
		t.Fatalf("held keys on /status: %+v", keys)
	}
	ref := dedupe.GateRef{Group: "ledger", Topic: topic, Partition: 0, Key: "acct-1"}
	pub := consumer.NewPublisher(e.brokers, nil)
	defer pub.Close()
	f, err := consumer.Unblock(context.Background(), en.store, pub, ref)
	if err != nil || f == nil {
		t.Fatalf("unblock: %+v, %v", f, err)
	}
	waitFor(t, 30*time.Second, "behind done", func() bool { return en.finished(consumer.OutcomeProcessed) == 2 })
	if behind := c.of("behind"); len(behind) != 1 {
		t.Errorf("behind ran %d times, want once", len(behind))
	}
	if _, err := consumer.Unblock(context.Background(), en.store, pub, ref); !errors.Is(err, dedupe.ErrNotHeld) {
		t.Errorf("unblock once the key moved on: %v, want ErrNotHeld", err)
	}
	waitFor(t, 30*time.Second, "no gate left", func() bool {
		s := en.Status().Gates
		return s != nil && s.Gated == 0 && en.value("fleet_order_gated_keys") == 0
	})
}
