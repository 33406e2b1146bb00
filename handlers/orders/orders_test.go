package orders_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/handlertest"
	"github.com/fleetworks/fleet/handlers/orders"
)

var t0 = time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)

func event(id, typ, order, data string, at time.Duration) handlers.Event {
	return handlers.Event{ID: id, Source: "shop", Type: typ, Key: order, Time: t0.Add(at),
		DataContentType: "application/json", Data: []byte(data)}
}

func kit(t *testing.T, seed uint64) *handlertest.Kit {
	t.Helper()
	r := handlers.NewRouter()
	k := handlertest.New(t, r, seed)
	if err := orders.New(k.State()).Register(r); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestLifecycles runs orders through their lifecycles, every event
// delivered twice and orders interleaved: each view ends exact, each
// transition applied once.
func TestLifecycles(t *testing.T) {
	for seed := range uint64(20) {
		k := kit(t, seed)
		var all []handlers.Event
		for i := range 10 {
			o := fmt.Sprintf("o-%d", i)
			evs := []handlers.Event{
				event(o+"-c", orders.TypeCreated, o, fmt.Sprintf(`{"order_id":%q,"customer":"c-%d","total_cents":%d}`, o, i, 1000+i), 0),
				event(o+"-p", orders.TypePaid, o, fmt.Sprintf(`{"order_id":%q}`, o), time.Minute),
			}
			switch i % 3 {
			case 0:
				evs = append(evs, event(o+"-s", orders.TypeShipped, o, fmt.Sprintf(`{"order_id":%q}`, o), time.Hour))
			case 1:
				evs = append(evs, event(o+"-x", orders.TypeCancelled, o, fmt.Sprintf(`{"order_id":%q}`, o), time.Hour))
			}
			all = append(all, evs...)
		}
		k.Deliver(all...)
		k.AssertAppliedOnce(all...)
		if k.Duplicates() != len(all) {
			t.Errorf("seed %d: %d duplicates skipped, want %d", seed, k.Duplicates(), len(all))
		}
		for i := range 10 {
			o := fmt.Sprintf("o-%d", i)
			want := []string{orders.StatusShipped, orders.StatusCancelled, orders.StatusPaid}[i%3]
			k.AssertState(
				handlertest.Expect{Key: orders.ViewKey(o), Field: "status", Value: want},
				handlertest.Expect{Key: orders.ViewKey(o), Field: "customer", Value: fmt.Sprintf("c-%d", i)},
				handlertest.Expect{Key: orders.ViewKey(o), Field: "total_cents", Value: fmt.Sprint(1000 + i)},
				handlertest.Expect{Key: orders.ViewKey(o), Field: "created_at", Value: t0.Format(time.RFC3339Nano)},
				handlertest.Expect{Key: orders.ViewKey(o), Field: "paid_at", Value: t0.Add(time.Minute).Format(time.RFC3339Nano)},
			)
		}
	}
}

// TestImpossibleTransitions: each is a permanent error naming the states,
// and leaves the view as it was.
func TestImpossibleTransitions(t *testing.T) {
	tests := []struct {
		name   string
		before []handlers.Event
		bad    handlers.Event
		status string
		want   string
	}{
		{"paid before created", nil, event("p", orders.TypePaid, "o", `{"order_id":"o"}`, 0), "",
			"order.paid is impossible when the order is not created"},
		{"created twice", []handlers.Event{event("c", orders.TypeCreated, "o", `{"order_id":"o","customer":"a","total_cents":5}`, 0)},
			event("c2", orders.TypeCreated, "o", `{"order_id":"o","customer":"b","total_cents":9}`, 0), orders.StatusCreated,
			"order.created is impossible when the order is created"},
		{"shipped before paid", []handlers.Event{event("c", orders.TypeCreated, "o", `{"order_id":"o","customer":"a","total_cents":5}`, 0)},
			event("s", orders.TypeShipped, "o", `{"order_id":"o"}`, 0), orders.StatusCreated,
			"order.shipped is impossible when the order is created"},
		{"paid twice by two events", []handlers.Event{
			event("c", orders.TypeCreated, "o", `{"order_id":"o","customer":"a","total_cents":5}`, 0),
			event("p", orders.TypePaid, "o", `{"order_id":"o"}`, 0)},
			event("p2", orders.TypePaid, "o", `{"order_id":"o"}`, 0), orders.StatusPaid,
			"order.paid is impossible when the order is paid"},
		{"cancelled after shipped", []handlers.Event{
			event("c", orders.TypeCreated, "o", `{"order_id":"o","customer":"a","total_cents":5}`, 0),
			event("p", orders.TypePaid, "o", `{"order_id":"o"}`, 0),
			event("s", orders.TypeShipped, "o", `{"order_id":"o"}`, 0)},
			event("x", orders.TypeCancelled, "o", `{"order_id":"o"}`, 0), orders.StatusShipped,
			"order.cancelled is impossible when the order is shipped"},
		{"key is not the order", nil, event("c", orders.TypeCreated, "other", `{"order_id":"o","customer":"a","total_cents":5}`, 0), "",
			"must be the order id"},
		{"created without total", nil, event("c", orders.TypeCreated, "o", `{"order_id":"o","customer":"a"}`, 0), "",
			"needs customer and a non-negative total_cents"},
		{"not JSON", nil, event("c", orders.TypeCreated, "o", `{`, 0), "", "decode order event"},
		{"without order_id", nil, event("c", orders.TypeCreated, "o", `{"customer":"a","total_cents":5}`, 0), "",
			"decode order event: order_id: missing or empty"},
		{"total as a string", nil, event("c", orders.TypeCreated, "o", `{"order_id":"o","customer":"a","total_cents":"5"}`, 0), "",
			"decode order event: total_cents: expected integer, got string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kit(t, 1)
			k.DeliverInOrder(tt.before...)
			k.DeliverInOrder(tt.bad)
			err := k.Err(tt.bad)
			if err == nil || handlers.KindOf(err) != handlers.KindPermanent || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v (%s), want a permanent error with %q", err, handlers.KindOf(err), tt.want)
			}
			if k.Runs(tt.bad) != 1 {
				t.Errorf("a permanent error was retried: %d runs", k.Runs(tt.bad))
			}
			k.AssertState(handlertest.Expect{Key: orders.ViewKey("o"), Field: "status", Value: tt.status})
		})
	}
}
