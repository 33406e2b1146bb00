// Package orders keeps a read model of orders from order events: the
// projector of the seed design.
//
// order.created, order.paid, order.shipped and order.cancelled carry JSON
// data with the order's id ({"order_id": "..."}; order.created also
// "customer" and "total_cents"). The view of an order is the Redis hash
// "orders:{<order_id>}:view" with the fields status, customer, total_cents,
// created_at, paid_at, shipped_at, cancelled_at (RFC 3339 event times) and
// last_event (the id of the event that made the last transition). Producers
// key the Kafka message by the order id, so that the view is bound to the
// events' aggregate (handlers.BoundTo), shares the slot of their idempotency
// records, and the events of one order run in order; an event keyed
// otherwise, or not at all, is refused as a permanent error.
//
// The state machine: created → paid → shipped, and created or paid →
// cancelled. A duplicate (same source and id) never reaches the handler;
// the same transition from another event (a second order.paid) is refused,
// like every impossible transition (paid before created, shipped after
// cancelled), as a permanent error naming the states: it goes to the
// dead-letter topic and the order's view stays as it was.
package orders

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fleetworks/fleet/handlers"
)

// Event types handled by the orders projection.
const (
	TypeCreated   = "order.created"
	TypePaid      = "order.paid"
	TypeShipped   = "order.shipped"
	TypeCancelled = "order.cancelled"
)

// Order states, the values of the status field.
const (
	StatusCreated   = "created"
	StatusPaid      = "paid"
	StatusShipped   = "shipped"
	StatusCancelled = "cancelled"
)

// ViewKey is the Redis hash holding the view of an order.
func ViewKey(orderID string) string { return "orders:{" + orderID + "}:view" }

// data is an order event's payload. TotalCents is a pointer because a total
// of 0 is allowed and a missing one is not.
type data struct {
	OrderID    string `json:"order_id"`
	Customer   string `json:"customer"`
	TotalCents *int64 `json:"total_cents"`
}

// Validate checks what every order event needs; handlers.JSON calls it.
// What order.created needs on top depends on the event type: Handle checks
// it.
func (d data) Validate() error {
	if d.OrderID == "" {
		return errors.New("order_id: missing or empty")
	}
	return nil
}

// transitions: for each event type, the states it may leave and the state
// it enters ("" is an order not created yet).
var transitions = map[string]struct {
	from []string
	to   string
	at   string
}{
	TypeCreated:   {from: []string{""}, to: StatusCreated, at: "created_at"},
	TypePaid:      {from: []string{StatusCreated}, to: StatusPaid, at: "paid_at"},
	TypeShipped:   {from: []string{StatusPaid}, to: StatusShipped, at: "shipped_at"},
	TypeCancelled: {from: []string{StatusCreated, StatusPaid}, to: StatusCancelled, at: "cancelled_at"},
}

// Projector maintains order views. Create it with New.
type Projector struct {
	view handlers.View
}

// New returns a projector that reads current views through view.
func New(view handlers.View) *Projector { return &Projector{view: view} }

// Register routes the order event types to a projector reading view, as
// fleet.Domain registers a domain.
func Register(r *handlers.Router, view handlers.View) error { return New(view).Register(r) }

// Register routes the order event types to p.
func (p *Projector) Register(r *handlers.Router) error {
	for typ := range transitions {
		if err := r.Register(typ, p); err != nil {
			return err
		}
	}
	return nil
}

// Handle applies one order event to its order's view.
func (p *Projector) Handle(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
	t, ok := transitions[ev.Type]
	if !ok {
		return fmt.Errorf("orders: %w %q", handlers.ErrUnknownType, ev.Type)
	}
	d, err := handlers.JSON[data](ev.Data)
	if err != nil {
		return fmt.Errorf("decode order event: %w", err) // permanent
	}
	switch {
	case ev.Key != d.OrderID:
		return handlers.Permanentf("order %s: the message key %q must be the order id", d.OrderID, ev.Key)
	case ev.Type == TypeCreated && (d.Customer == "" || d.TotalCents == nil || *d.TotalCents < 0):
		return handlers.Permanentf("order %s: order.created needs customer and a non-negative total_cents", d.OrderID)
	}
	key := ViewKey(d.OrderID)
	current, err := p.view.HGetAll(ctx, key)
	if err != nil {
		return fmt.Errorf("read order %s: %w", d.OrderID, err) // retryable
	}
	status := current["status"]
	allowed := false
	for _, from := range t.from {
		allowed = allowed || from == status
	}
	if !allowed {
		from := status
		if from == "" {
			from = "not created"
		}
		return handlers.Permanentf("order %s: %s is impossible when the order is %s", d.OrderID, ev.Type, from)
	}
	when := ev.Time
	if when.IsZero() {
		when = time.Now()
	}
	tx.HSet(key, "status", t.to)
	tx.HSet(key, t.at, when.UTC().Format(time.RFC3339Nano))
	tx.HSet(key, "last_event", ev.ID)
	if ev.Type == TypeCreated {
		tx.HSet(key, "customer", d.Customer)
		tx.HSet(key, "total_cents", strconv.FormatInt(*d.TotalCents, 10))
	}
	return nil
}
