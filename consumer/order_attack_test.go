package consumer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// slowClaims is the Redis store whose answer to a chosen claim batch comes
// back late: the claim has run in Redis, its reply is on a slow network.
type slowClaims struct {
	*dedupe.Redis
	mu      sync.Mutex
	slowID  string
	done    bool
	claimed chan struct{} // closed once the slow claim ran in Redis
	delay   time.Duration
}

func (s *slowClaims) ClaimBatch(ctx context.Context, claims []dedupe.Claim) ([]dedupe.ClaimResult, error) {
	res, err := s.Redis.ClaimBatch(ctx, claims)
	s.mu.Lock()
	slow := false
	if !s.done && err == nil {
		for _, c := range claims {
			if c.Event != nil && c.Event.ID == s.slowID {
				slow, s.done = true, true
			}
		}
	}
	s.mu.Unlock()
	if slow {
		close(s.claimed)
		time.Sleep(s.delay)
	}
	return res, err
}

// TestOrderSlowClaimAnswerAfterTheMark: the claim of "second" (same key,
// the next batch) acquires in Redis before "first" fails and makes the
// gate, but its answer comes back only after "first" has left the key
// queue. Its batch was claimed before the mark, so the mark must outlive
// the key's stay in the queue until that batch is queued: "second" is
// parked, not run, and the key completes first, second, third.
func TestOrderSlowClaimAnswerAfterTheMark(t *testing.T) {
	e := newEnv(t, 1)
	var c calls
	var completedMu sync.Mutex
	var completed []string
	slow := &slowClaims{slowID: "second", claimed: make(chan struct{}), delay: time.Second}
	firstStarted := make(chan struct{}, 1)
	secondFailed := make(chan struct{}, 1)
	var firstRuns, secondRuns int
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		c.add(ev.ID)
		switch ev.ID {
		case "first":
			firstRuns++
			if firstRuns == 1 {
				firstStarted <- struct{}{}
				<-slow.claimed // second's claim has run in Redis, before any gate
				return errDownstream
			}
		case "second":
			secondRuns++
			if secondRuns == 1 {
				secondFailed <- struct{}{}
				return errDownstream
			}
		}
		completedMu.Lock()
		completed = append(completed, ev.ID)
		completedMu.Unlock()
		return nil
	})
	en := e.start(options{router: router, wrap: func(r *dedupe.Redis) consumer.Store { slow.Redis = r; return slow },
		configure: func(cfg *consumer.Config) {
			cfg.InPlaceAttempts = 1
			cfg.RetryDelays = []time.Duration{2 * time.Second}
		}})
	e.publish(payment("first", "acct-1", ledger.TypeCaptured, 5))
	<-firstStarted
	e.publish(payment("second", "acct-1", ledger.TypeCaptured, 7))
	select {
	case <-secondFailed:
	case <-time.After(20 * time.Second):
		t.Fatalf("second never ran its first attempt (parked as it should?)")
	}
	e.publish(payment("third", "acct-1", ledger.TypeCaptured, 11))
	waitFor(t, 30*time.Second, "every event done", func() bool { return en.finished(consumer.OutcomeProcessed) == 3 })
	completedMu.Lock()
	defer completedMu.Unlock()
	t.Logf("handler completions in order: %v; first runs %v, second runs %v, third %v", completed, c.of("first"), c.of("second"), c.of("third"))
	if len(completed) != 3 || completed[0] != "first" || completed[1] != "second" || completed[2] != "third" {
		t.Errorf("key acct-1 completed out of order: %v (want first, second, third)", completed)
	}
}

// TestOrderTierWithFewerPartitions: the retry tier has fewer partitions
// than the source (the source grew, or the tier was made by hand), so a
// tier copy of source partition 1 lands on tier partition 0. The gate is
// named by the source partition in fleet's headers, not the tier's own:
// the head's end finds it, and the event parked behind it runs.
func TestOrderTierWithFewerPartitions(t *testing.T) {
	e := newEnv(t, 2)
	e.createTopic(consumer.RetryTopic(topic, 1), 1)
	failures := 0
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "first" && failures < 1 {
			failures++
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{200 * time.Millisecond}
	}})
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, Balancer: consumer.PartitionBalancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: e.transport}
	defer w.Close()
	first, second := payment("first", "acct-1", ledger.TypeCaptured, 5), payment("second", "acct-1", ledger.TypeCaptured, 7)
	first.Partition, second.Partition = 1, 1
	e.write(w, first, second)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && en.finished(consumer.OutcomeProcessed) < 2 {
		time.Sleep(50 * time.Millisecond)
	}
	keys := e.rdb.Keys(context.Background(), "fleet:order:{*").Val()
	if got := en.finished(consumer.OutcomeProcessed); got != 2 {
		t.Fatalf("processed %d of 2 after 15s (parked %d); gates left: %v", got, en.finished(consumer.OutcomeParked), keys)
	}
}

// crashAfterEnd is the Redis store of a worker that dies right after the
// release script of a dead letter under continue ended its head (and
// popped the next follower), before the follower is written to
// <topic>.parked.
type crashAfterEnd struct {
	*dedupe.Redis
	crashed chan struct{}
	once    sync.Once
}

func (s *crashAfterEnd) ReleaseGate(ctx context.Context, l dedupe.Lease, ref dedupe.GateRef, step dedupe.GateStep) (*dedupe.Follower, error) {
	f, err := s.Redis.ReleaseGate(ctx, l, ref, step)
	if err != nil || step != dedupe.GateEndHead || f == nil {
		return f, err
	}
	crash := false
	s.once.Do(func() { crash = true })
	if !crash {
		return f, err
	}
	close(s.crashed)
	<-ctx.Done() // the process is gone: nothing after this step happens
	return nil, ctx.Err()
}

// TestOrderCrashAfterDeadLetterEnd: a head's tier copy is dead-lettered
// under continue, and its release ends it, releasing "behind"; the worker
// dies before writing "behind" to <topic>.parked. The successor reads the
// head's tier copy again: its claim answers duplicate with Head (the gate
// remembers the head whose end released "behind"), the end is redone, and
// "behind" runs.
func TestOrderCrashAfterDeadLetterEnd(t *testing.T) {
	e := newEnv(t, 1)
	runs := 0
	router, c := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "doomed" {
			runs++
			if runs == 1 {
				return errDownstream
			}
			return handlers.Permanent(errDownstream)
		}
		return nil
	})
	configure := func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{300 * time.Millisecond}
	}
	s := &crashAfterEnd{crashed: make(chan struct{})}
	en := e.start(options{router: router, wrap: func(r *dedupe.Redis) consumer.Store { s.Redis = r; return s }, configure: configure})
	e.publish(payment("doomed", "acct-1", ledger.TypeCaptured, 5), payment("behind", "acct-1", ledger.TypeCaptured, 7))
	select {
	case <-s.crashed:
	case <-time.After(20 * time.Second):
		t.Fatal("the dead letter's release never ended the head")
	}
	en.stop()
	gate, _ := en.store.Gate(context.Background(), dedupe.GateRef{Group: "ledger", Topic: topic, Key: "acct-1"}.Gate())
	t.Logf("gate after the crash: %+v", gate)

	en2 := e.start(options{router: router, configure: configure})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && en2.finished(consumer.OutcomeProcessed) < 1 {
		time.Sleep(50 * time.Millisecond)
	}
	gate, _ = en2.store.Gate(context.Background(), dedupe.GateRef{Group: "ledger", Topic: topic, Key: "acct-1"}.Gate())
	if got := en2.finished(consumer.OutcomeProcessed); got != 1 {
		t.Fatalf("behind never ran after the restart (successor: parked %d, dead-lettered %d; behind's runs %d); gate %+v",
			en2.finished(consumer.OutcomeParked), en2.finished(consumer.OutcomeDeadLettered), c.runs["behind"], gate)
	}
}

// crashAtEnd dies right after the n-th End that released a follower,
// before that follower is written.
type crashAtEnd struct {
	*dedupe.Redis
	mu      sync.Mutex
	n       int
	crashed chan struct{}
}

func (s *crashAtEnd) End(ctx context.Context, gate, head string) (*dedupe.Follower, error) {
	f, err := s.Redis.End(ctx, gate, head)
	return s.crashAfter(ctx, f, err)
}

func (s *crashAtEnd) Skip(ctx context.Context, gate, head, by string) (*dedupe.Follower, error) {
	f, err := s.Redis.Skip(ctx, gate, head, by)
	return s.crashAfter(ctx, f, err)
}

// crashAfter dies after the n-th end or skip that released a follower.
func (s *crashAtEnd) crashAfter(ctx context.Context, f *dedupe.Follower, err error) (*dedupe.Follower, error) {
	if err != nil || f == nil {
		return f, err
	}
	s.mu.Lock()
	s.n--
	crash := s.n == 0
	s.mu.Unlock()
	if !crash {
		return f, err
	}
	close(s.crashed)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestOrderCrashInAReleaseChain: a head succeeds; its end releases "big",
// too large for <topic>.parked with fleet's headers, which is dead-lettered
// and skipped, releasing "after"; the worker dies before writing "after".
// The skip keeps the head as the one whose end released "after", so the
// head's copy, read again, redoes the chain and "after" runs.
func TestOrderCrashInAReleaseChain(t *testing.T) {
	e := newEnv(t, 1)
	runs := 0
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "doomed" {
			runs++
			if runs == 1 {
				return errDownstream
			}
		}
		return nil
	})
	configure := func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{1500 * time.Millisecond}
	}
	big := payment("big", "acct-1", ledger.TypeCaptured, 1)
	big.Headers = append(big.Headers, kafka.Header{Key: "x-pad", Value: []byte(strings.Repeat("x", 1<<20-600))})
	s := &crashAtEnd{n: 2, crashed: make(chan struct{})}
	en := e.start(options{router: router, wrap: func(r *dedupe.Redis) consumer.Store { s.Redis = r; return s }, configure: configure})
	w := e.writerFor(topic, &kafka.Hash{})
	e.write(w, payment("doomed", "acct-1", ledger.TypeCaptured, 5))
	e.write(w, big)
	e.write(w, payment("after", "acct-1", ledger.TypeCaptured, 7))
	select {
	case <-s.crashed:
	case <-time.After(20 * time.Second):
		t.Fatal("never released after")
	}
	en.stop()
	g0, _ := en.store.Gate(context.Background(), dedupe.GateRef{Group: "ledger", Topic: topic, Key: "acct-1"}.Gate())
	t.Logf("crashed; gate %+v; first worker: parked %d, dead-lettered %d, committed %d", g0, en.finished(consumer.OutcomeParked), en.finished(consumer.OutcomeDeadLettered), e.committed("ledger", 1))
	en2 := e.start(options{router: router, configure: configure})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && en2.finished(consumer.OutcomeProcessed) < 1 {
		time.Sleep(50 * time.Millisecond)
	}
	gate, _ := en2.store.Gate(context.Background(), dedupe.GateRef{Group: "ledger", Topic: topic, Key: "acct-1"}.Gate())
	t.Logf("successor: processed %d duplicate %d parked %d; gate %+v", en2.finished(consumer.OutcomeProcessed), en2.finished(consumer.OutcomeDuplicate), en2.finished(consumer.OutcomeParked), gate)
	if got := en2.finished(consumer.OutcomeProcessed); got != 1 {
		t.Fatalf("after never ran (successor finished %d: duplicate %d); gate %+v", en2.finished(""),
			en2.finished(consumer.OutcomeDuplicate), gate)
	}
}
