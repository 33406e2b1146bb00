package consumer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestCopyArrivingWhileOriginalWaits: an event whose first run fails waits
// in place, its claim given back, before it claims again. A copy of it (a
// producer's resend, same id and payload) fetched meanwhile queues behind
// it on its key, and must not take the claim for itself: the original at
// the head of the key would then wait for a claim held by the copy behind
// it, kept alive by the copy's lease, and neither would ever run.
func TestCopyArrivingWhileOriginalWaits(t *testing.T) {
	e := newEnv(t, 1)
	var failed atomic.Bool
	firstRun := make(chan struct{})
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "flaky" && !failed.Swap(true) {
			close(firstRun)
			return errDownstream
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 3
		cfg.RetryBackoff = 2 * time.Second // the copy is fetched and claimed during the wait
		cfg.MaxRetryBackoff = 2 * time.Second
		cfg.RetryDelays = nil
		cfg.RetryOrder = consumer.OrderNone
	}})
	original := payment("flaky", "acct-1", ledger.TypeCaptured, 5)
	e.publish(original)
	<-firstRun
	e.publish(original, payment("after", "acct-1", ledger.TypeCaptured, 7))

	waitFor(t, 30*time.Second, "the original done, its copy a duplicate, the next event done", func() bool {
		return en.finished(consumer.OutcomeProcessed) == 2 && en.finished(consumer.OutcomeDuplicate) == 1
	})
	if got := e.balances([]string{"acct-1"})["acct-1"]; got != 12 {
		t.Errorf("balance = %d, want 12", got)
	}
}
