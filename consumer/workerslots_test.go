package consumer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
)

// TestWorkerMaxInFlight runs workers of 8 partitions (and their tiers)
// through failures sent to a retry tier and a rebalance, every event
// applied once. With room for 6 events in the worker, no worker ever runs
// more than 6 handlers at once. With room for 64 and 1 event per partition,
// each partition's fetcher waits with its next message while the event
// runs, and drops it at the rebalance: once idle, a worker holds none of
// its slots (a slot lost at a drain would shrink the cap for good).
func TestWorkerMaxInFlight(t *testing.T) {
	tests := []struct {
		name                string
		slots, perPartition int
		handler             time.Duration
		wantCapReached      bool
	}{
		{"the worker's cap", 6, 256, 5 * time.Millisecond, true},
		{"fetched messages dropped", 64, 1, 20 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testWorkerSlots(t, tt.slots, tt.perPartition, tt.handler, tt.wantCapReached)
		})
	}
}

func testWorkerSlots(t *testing.T, slots, perPartition int, handler time.Duration, wantCapReached bool) {
	e := newEnv(t, 8)
	var failed sync.Map
	var mu sync.Mutex
	most := map[string]int{}
	router := func(worker string) *handlers.Router {
		running := 0
		r, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
			mu.Lock()
			running++
			most[worker] = max(most[worker], running)
			mu.Unlock()
			time.Sleep(handler)
			mu.Lock()
			running--
			mu.Unlock()
			if _, again := failed.LoadOrStore(ev.ID, true); !again && strings.HasSuffix(ev.ID, "7") {
				return errDownstream
			}
			return nil
		})
		return r
	}
	configure := func(cfg *consumer.Config) {
		cfg.WorkerMaxInFlight, cfg.MaxInFlight, cfg.Lanes = slots, perPartition, 4
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{200 * time.Millisecond}
	}
	first := e.start(options{router: router("first"), configure: configure})
	s := newStream(600, 30, 41)
	e.publish(s.unique...)
	waitFor(t, 30*time.Second, "a sixth processed", func() bool { return first.finished(consumer.OutcomeProcessed) >= 100 })
	second := e.start(options{router: router("second"), configure: configure})
	waitFor(t, 60*time.Second, "every event processed", func() bool {
		return first.finished(consumer.OutcomeProcessed)+second.finished(consumer.OutcomeProcessed) >= len(s.unique)
	})
	e.checkBalances(s)
	if second.finished("") == 0 || first.finished(consumer.OutcomeRetried)+second.finished(consumer.OutcomeRetried) == 0 {
		t.Fatal("the second worker took no partition, or no event went to the retry tier")
	}
	mu.Lock()
	for w, n := range most {
		if n > slots {
			t.Errorf("%s ran %d handlers at once, more than its %d slots", w, n, slots)
		}
	}
	if wantCapReached && most["first"] != slots {
		t.Errorf("the first worker ran at most %d handlers at once, never its %d slots: the test shows nothing", most["first"], slots)
	}
	mu.Unlock()
	for _, en := range []*engine{first, second} {
		waitFor(t, 10*time.Second, "an idle worker's slots all given back", func() bool { return en.SlotsHeld() == 0 })
	}
}
