package consumer_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/orders"
	"github.com/segmentio/kafka-go"
)

// TestOrdersThroughRetries is the state machine the ordering issue names:
// order.paid fails transiently twice and waits in the retry tiers while
// order.shipped arrives behind it. With the defaults (--retry-order key)
// shipped is parked behind paid and runs after it: the order ends shipped.
// With --retry-order none, shipped overtakes paid, is refused as an
// impossible transition and dead-lettered, and the order ends paid.
func TestOrdersThroughRetries(t *testing.T) {
	for _, tc := range []struct {
		order, status string
		deadLetters   int
	}{
		{consumer.OrderKey, orders.StatusShipped, 0},
		{consumer.OrderNone, orders.StatusPaid, 1},
	} {
		t.Run("retry order "+tc.order, func(t *testing.T) {
			e := newEnv(t, 1)
			var failed atomic.Int32
			router := ordersRouter(t, e, func(ev handlers.Event) error {
				if ev.Type == orders.TypePaid && failed.Add(1) <= 2 {
					return errDownstream
				}
				return nil
			})
			en := e.start(options{group: "orders", router: router, configure: func(cfg *consumer.Config) {
				cfg.InPlaceAttempts = 1
				cfg.RetryDelays = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
				cfg.RetryOrder = tc.order
			}})
			e.publish(orderEvent("o-1", orders.TypeCreated, "c1"), orderEvent("o-1", orders.TypePaid, "p1"),
				orderEvent("o-1", orders.TypeShipped, "s1"))

			waitFor(t, 30*time.Second, "paid and shipped finished", func() bool {
				return en.finished(consumer.OutcomeProcessed)+en.finished(consumer.OutcomeDeadLettered) == 3
			})
			view, err := dedupe.NewRedisView(e.rdb).HGetAll(context.Background(), orders.ViewKey("o-1"))
			if err != nil {
				t.Fatal(err)
			}
			if view["status"] != tc.status {
				t.Errorf("order status %q, want %q (view %v)", view["status"], tc.status, view)
			}
			if got := en.finished(consumer.OutcomeDeadLettered); got != tc.deadLetters {
				t.Errorf("dead-lettered %d, want %d", got, tc.deadLetters)
			}
			if got := failed.Load(); got != 3 {
				t.Errorf("order.paid ran %d times, want 3 (two failures, then success)", got)
			}
		})
	}
}

// ordersRouter is the orders projection behind a middleware that may fail
// an event before it runs.
func ordersRouter(t *testing.T, e *env, fail func(handlers.Event) error) *handlers.Router {
	t.Helper()
	inner := handlers.NewRouter()
	if err := orders.Register(inner, dedupe.NewRedisView(e.rdb)); err != nil {
		t.Fatal(err)
	}
	r := handlers.NewRouter()
	for _, typ := range inner.Types() {
		h, _ := inner.Lookup(typ)
		err := r.Register(typ, handlers.HandlerFunc(func(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
			if err := fail(ev); err != nil {
				return err
			}
			return h.Handle(ctx, ev, tx)
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// orderEvent is an order event keyed by its order id.
func orderEvent(orderID, typ, id string) kafka.Message {
	data, _ := json.Marshal(map[string]any{"order_id": orderID, "customer": "ada", "total_cents": 1200})
	return kafka.Message{
		Key:   []byte(orderID),
		Value: data,
		Headers: []kafka.Header{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte(id)},
			{Key: "ce_source", Value: []byte("orders-api")},
			{Key: "ce_type", Value: []byte(typ)},
			{Key: "content-type", Value: []byte("application/json")},
		},
	}
}
