package consumer_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestFleetWideRateLimit runs two engines of one group with a limit of 20
// payment.captured runs per second, held in Redis: in no second do the two
// together start more than the limit plus its burst, the time waited is
// counted, events of other types are not held back, and every event is
// applied once.
func TestFleetWideRateLimit(t *testing.T) {
	e := newEnv(t, 4)
	var mu sync.Mutex
	var starts []time.Time
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.Type == ledger.TypeCaptured {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
		}
		return nil
	})
	limits, err := dedupe.ParseRateLimits("payment.captured=20/s")
	if err != nil {
		t.Fatal(err)
	}
	configure := func(c *consumer.Config) { c.RateLimiter = dedupe.NewRateLimits(e.rdb, "ledger", limits) }
	a := e.start(options{router: router, configure: configure})
	b := e.start(options{router: router, configure: configure})
	s := newStream(120, 30, 51)
	refunds := 0
	for _, m := range s.unique {
		if headerValue(m, "ce_type") == ledger.TypeRefunded {
			refunds++
		}
	}
	e.publish(s.unique...)
	waitFor(t, 60*time.Second, "every event processed", func() bool {
		return a.finished(consumer.OutcomeProcessed)+b.finished(consumer.OutcomeProcessed) == len(s.unique)
	})
	e.checkBalances(s)

	mu.Lock()
	defer mu.Unlock()
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	if len(starts) != len(s.unique)-refunds {
		t.Fatalf("%d captured runs, want %d", len(starts), len(s.unique)-refunds)
	}
	// GCRA with rate 20/s and burst 20 grants at most 20 + 20 runs in any
	// second; a handler starts a little after its grant, so allow a few
	// more. Without the limit, all of them start within milliseconds.
	for i := range starts {
		n := 0
		for j := i; j < len(starts) && starts[j].Sub(starts[i]) < time.Second; j++ {
			n++
		}
		if n > 44 {
			t.Fatalf("%d runs started within a second from %v: over the fleet-wide limit", n, starts[i])
		}
	}
	if waited := a.value("fleet_handler_throttled_seconds_total") + b.value("fleet_handler_throttled_seconds_total"); waited <= 0 {
		t.Error("no throttled time counted")
	}
	t.Logf("%d captured runs over %v; refunds unlimited: %d", len(starts), starts[len(starts)-1].Sub(starts[0]).Round(time.Millisecond), refunds)
}
