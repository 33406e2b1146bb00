package consumer_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestMetricValues runs a known scenario on a pedantic registry and checks
// the exact value of every outcome series: two events, a duplicate, an id
// reused with another payload, an unknown type, and an event whose handler
// fails once.
func TestMetricValues(t *testing.T) {
	e := newEnv(t, 1)
	var failed atomic.Bool
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "flaky" && !failed.Swap(true) {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	en := e.start(options{router: router})
	e.publish(
		payment("ok-1", "acct-1", ledger.TypeCaptured, 10),
		payment("ok-2", "acct-2", ledger.TypeCaptured, 20),
		payment("ok-1", "acct-1", ledger.TypeCaptured, 10), // duplicate
		payment("ok-1", "acct-1", ledger.TypeCaptured, 99), // conflict
		payment("u-1", "acct-2", "payment.voided", 5),      // unknown type
		payment("flaky", "acct-3", ledger.TypeCaptured, 30),
	)
	waitFor(t, 20*time.Second, "every event finished", func() bool { return en.finished("") == 6 })

	const expected = `
# HELP fleet_consumer_events_finished_total Events finished, by outcome: processed, duplicate, conflict (dead-lettered), retried (to a retry topic), dead_lettered, parked (behind an earlier event of its key) or other_group (another group's retry).
# TYPE fleet_consumer_events_finished_total counter
fleet_consumer_events_finished_total{outcome="conflict",topic="payments",type="payment.captured"} 1
fleet_consumer_events_finished_total{outcome="dead_lettered",topic="payments",type="unknown"} 1
fleet_consumer_events_finished_total{outcome="duplicate",topic="payments",type="payment.captured"} 1
fleet_consumer_events_finished_total{outcome="processed",topic="payments",type="payment.captured"} 3
# HELP fleet_consumer_events_received_total Kafka messages fetched, by topic and event type (unknown when undecodable or unregistered).
# TYPE fleet_consumer_events_received_total counter
fleet_consumer_events_received_total{topic="payments",type="payment.captured"} 5
fleet_consumer_events_received_total{topic="payments",type="unknown"} 1
# HELP fleet_consumer_retries_total In-place retries of events whose handler failed with a retryable error, by reason: error, or timeout (the handler timeout passed).
# TYPE fleet_consumer_retries_total counter
fleet_consumer_retries_total{reason="error",topic="payments",type="payment.captured"} 1
# HELP fleet_consumer_dead_letters_total Events written to a dead-letter topic, by reason.
# TYPE fleet_consumer_dead_letters_total counter
fleet_consumer_dead_letters_total{reason="conflict",topic="payments"} 1
fleet_consumer_dead_letters_total{reason="unknown_type",topic="payments"} 1
# HELP fleet_lease_lost_total Runs whose lease was lost while the handler ran: an external effect may have happened twice.
# TYPE fleet_lease_lost_total counter
fleet_lease_lost_total 0
# HELP fleet_consumer_in_flight_events Events fetched and not yet finished.
# TYPE fleet_consumer_in_flight_events gauge
fleet_consumer_in_flight_events 0
`
	if err := testutil.GatherAndCompare(en.reg, strings.NewReader(expected),
		"fleet_consumer_events_finished_total", "fleet_consumer_events_received_total", "fleet_consumer_retries_total",
		"fleet_consumer_dead_letters_total", "fleet_lease_lost_total", "fleet_consumer_in_flight_events"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(en.reg, "fleet_handler_duration_seconds"); err != nil || n != 1 {
		t.Errorf("handler duration series: %d, %v; want one, for payment.captured", n, err)
	}
	if problems, err := testutil.GatherAndLint(en.reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}
