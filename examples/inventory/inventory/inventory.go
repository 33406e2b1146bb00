// Package inventory keeps the stock of each SKU and the reservations
// against it, from inventory events keyed by the SKU.
//
// Events (JSON data, every one with "sku"):
//
//	inventory.received  {"sku", "quantity"}                 stock arrives
//	inventory.reserved  {"sku", "reservation", "quantity"}  an order holds stock
//	inventory.released  {"sku", "reservation"}              the hold ends unused
//	inventory.shipped   {"sku", "reservation"}              the held stock leaves
//
// The stock of a SKU is the hash "inventory:{<sku>}" with the fields
// on_hand and reserved; a reservation is the hash
// "inventory:{<sku>}:reservation:<id>" with status and quantity. Both carry
// the SKU as their hash tag: producers key events by the SKU, so the
// effects share the slot of the events' idempotency records, and the
// events of one SKU run one after another.
//
// A reservation's state machine: none → reserved → released or shipped. A
// reservation of more than is available (on_hand - reserved), a second
// reservation under one id, and every transition the machine does not have
// are refused as permanent errors: the event is dead-lettered and the
// stock stays as it was.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/fleetworks/fleet/handlers"
)

// Event types of the inventory domain.
const (
	TypeReceived = "inventory.received"
	TypeReserved = "inventory.reserved"
	TypeReleased = "inventory.released"
	TypeShipped  = "inventory.shipped"
)

// Reservation states.
const (
	StatusReserved = "reserved"
	StatusReleased = "released"
	StatusShipped  = "shipped"
)

// StockKey is the hash holding a SKU's on_hand and reserved quantities.
func StockKey(sku string) string { return "inventory:{" + sku + "}" }

// ReservationKey is the hash holding a reservation's status and quantity.
func ReservationKey(sku, id string) string { return StockKey(sku) + ":reservation:" + id }

// data is an inventory event's payload.
type data struct {
	SKU         string `json:"sku"`
	Reservation string `json:"reservation"`
	Quantity    int64  `json:"quantity"`
}

// Validate checks what every inventory event needs; handlers.JSON calls it.
func (d data) Validate() error {
	if d.SKU == "" {
		return errors.New("sku: missing or empty")
	}
	if d.Quantity < 0 {
		return fmt.Errorf("quantity: %d is negative", d.Quantity)
	}
	return nil
}

// Register routes the inventory event types to a handler reading view.
func Register(r *handlers.Router, view handlers.View) error {
	h := &handler{view: view}
	for typ, f := range map[string]handlers.HandlerFunc{
		TypeReceived: h.received, TypeReserved: h.reserved, TypeReleased: h.released, TypeShipped: h.shipped,
	} {
		if err := r.Register(typ, f); err != nil {
			return err
		}
	}
	return nil
}

type handler struct{ view handlers.View }

func (h *handler) received(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
	d, err := decode(ev)
	if err != nil {
		return err
	}
	if d.Quantity == 0 {
		return handlers.Permanentf("quantity: a delivery of nothing")
	}
	tx.HIncrBy(StockKey(d.SKU), "on_hand", d.Quantity)
	return nil
}

func (h *handler) reserved(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
	d, err := decode(ev)
	if err != nil {
		return err
	}
	if d.Reservation == "" || d.Quantity == 0 {
		return handlers.Permanentf("a reservation needs an id and a quantity")
	}
	status, _, err := h.reservation(ctx, d)
	if err != nil {
		return err
	}
	if status != "" {
		return handlers.Permanentf("reservation %q is already %s", d.Reservation, status)
	}
	stock, err := h.view.HGetAll(ctx, StockKey(d.SKU))
	if err != nil {
		return err // retryable: Redis did not answer
	}
	available := number(stock["on_hand"]) - number(stock["reserved"])
	if d.Quantity > available {
		return handlers.Permanentf("reservation %q of %d: only %d of %s available", d.Reservation, d.Quantity, available, d.SKU)
	}
	key := ReservationKey(d.SKU, d.Reservation)
	tx.HSet(key, "status", StatusReserved)
	tx.HSet(key, "quantity", strconv.FormatInt(d.Quantity, 10))
	tx.HIncrBy(StockKey(d.SKU), "reserved", d.Quantity)
	return nil
}

func (h *handler) released(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
	return h.end(ctx, ev, tx, StatusReleased)
}

func (h *handler) shipped(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
	return h.end(ctx, ev, tx, StatusShipped)
}

// end moves a reserved reservation to status: its quantity is no longer
// reserved, and a shipped one leaves the stock.
func (h *handler) end(ctx context.Context, ev handlers.Event, tx *handlers.Tx, status string) error {
	d, err := decode(ev)
	if err != nil {
		return err
	}
	current, quantity, err := h.reservation(ctx, d)
	if err != nil {
		return err
	}
	if current != StatusReserved {
		return handlers.Permanentf("reservation %q: %s from %q", d.Reservation, status, or(current, "none"))
	}
	tx.HSet(ReservationKey(d.SKU, d.Reservation), "status", status)
	tx.HIncrBy(StockKey(d.SKU), "reserved", -quantity)
	if status == StatusShipped {
		tx.HIncrBy(StockKey(d.SKU), "on_hand", -quantity)
	}
	return nil
}

// reservation reads a reservation's status ("" when there is none) and
// quantity.
func (h *handler) reservation(ctx context.Context, d data) (string, int64, error) {
	if d.Reservation == "" {
		return "", 0, handlers.Permanentf("reservation: missing or empty")
	}
	r, err := h.view.HGetAll(ctx, ReservationKey(d.SKU, d.Reservation))
	if err != nil {
		return "", 0, err
	}
	return r["status"], number(r["quantity"]), nil
}

// decode reads the payload, and refuses an event whose Kafka key is not its
// SKU: its effects would land outside the SKU's slot.
func decode(ev handlers.Event) (data, error) {
	d, err := handlers.JSON[data](ev.Data)
	if err != nil {
		return d, err
	}
	if ev.Key != d.SKU {
		return d, handlers.Permanentf("event keyed %q for sku %q: key inventory events by their sku", ev.Key, d.SKU)
	}
	return d, nil
}

func number(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}
