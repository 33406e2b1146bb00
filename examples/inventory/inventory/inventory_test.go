package inventory_test

import (
	"fmt"
	"testing"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/handlertest"

	"example.com/inventory/inventory"
)

func event(id, typ, sku, data string) handlers.Event {
	return handlers.Event{ID: id, Source: "warehouse", Type: typ, Key: sku, DataContentType: "application/json", Data: []byte(data)}
}

func received(id, sku string, n int) handlers.Event {
	return event(id, inventory.TypeReceived, sku, fmt.Sprintf(`{"sku":%q,"quantity":%d}`, sku, n))
}

func reserved(id, sku, res string, n int) handlers.Event {
	return event(id, inventory.TypeReserved, sku, fmt.Sprintf(`{"sku":%q,"reservation":%q,"quantity":%d}`, sku, res, n))
}

func ended(id, typ, sku, res string) handlers.Event {
	return event(id, typ, sku, fmt.Sprintf(`{"sku":%q,"reservation":%q}`, sku, res))
}

// kit is the handlertest kit running the inventory domain: it reads its
// projections from the kit's state, as it reads Redis in the fleet.
func kit(t *testing.T, seed uint64) *handlertest.Kit {
	t.Helper()
	r := handlers.NewRouter()
	k := handlertest.New(t, r, seed)
	if err := inventory.Register(r, k.State()); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestStockAndReservations runs SKUs through deliveries, reservations,
// releases and shipments, every event delivered twice and SKUs
// interleaved: every quantity ends exact.
func TestStockAndReservations(t *testing.T) {
	for seed := range uint64(10) {
		k := kit(t, seed)
		var all []handlers.Event
		for i := range 5 {
			sku := fmt.Sprintf("sku-%d", i)
			all = append(all,
				received(sku+"-r1", sku, 10),
				reserved(sku+"-a", sku, "a", 4),
				reserved(sku+"-b", sku, "b", 5),
				ended(sku+"-a-ship", inventory.TypeShipped, sku, "a"),
				ended(sku+"-b-rel", inventory.TypeReleased, sku, "b"),
				received(sku+"-r2", sku, 3),
			)
		}
		k.Deliver(all...)
		k.AssertAppliedOnce(all...)
		for i := range 5 {
			sku := fmt.Sprintf("sku-%d", i)
			k.AssertState(
				handlertest.Expect{Key: inventory.StockKey(sku), Field: "on_hand", Value: "9"},
				handlertest.Expect{Key: inventory.StockKey(sku), Field: "reserved", Value: "0"},
				handlertest.Expect{Key: inventory.ReservationKey(sku, "a"), Field: "status", Value: inventory.StatusShipped},
				handlertest.Expect{Key: inventory.ReservationKey(sku, "b"), Field: "status", Value: inventory.StatusReleased},
			)
		}
		if k.Duplicates() != len(all) {
			t.Fatalf("seed %d: %d duplicates skipped, want %d", seed, k.Duplicates(), len(all))
		}
	}
}

// TestRefusals: what the state machine does not have is permanent, and
// leaves the stock as it was.
func TestRefusals(t *testing.T) {
	tests := []struct {
		name string
		ev   handlers.Event
	}{
		{"more than available", reserved("x1", "sku-1", "big", 11)},
		{"an id reserved twice", reserved("x2", "sku-1", "a", 1)},
		{"release of a shipped one", ended("x3", inventory.TypeReleased, "sku-1", "s")},
		{"ship of an unknown one", ended("x4", inventory.TypeShipped, "sku-1", "nope")},
		{"keyed by another sku", event("x5", inventory.TypeReceived, "sku-2", `{"sku":"sku-1","quantity":1}`)},
		{"no sku", event("x6", inventory.TypeReceived, "sku-1", `{"quantity":1}`)},
		{"negative quantity", received("x7", "sku-1", -1)},
		{"not JSON", event("x8", inventory.TypeReceived, "sku-1", `{"sku":`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kit(t, 1)
			k.DeliverInOrder(received("r", "sku-1", 10), reserved("a", "sku-1", "a", 2), reserved("s", "sku-1", "s", 1),
				ended("s-ship", inventory.TypeShipped, "sku-1", "s"))
			k.DeliverInOrder(tt.ev)
			if err := k.Err(tt.ev); handlers.KindOf(err) != handlers.KindPermanent {
				t.Fatalf("err = %v, want a permanent error", err)
			}
			k.AssertState(
				handlertest.Expect{Key: inventory.StockKey("sku-1"), Field: "on_hand", Value: "9"},
				handlertest.Expect{Key: inventory.StockKey("sku-1"), Field: "reserved", Value: "2"},
			)
		})
	}
}
