// Package ledger keeps account balances from payment events.
//
// payment.captured credits an account and payment.refunded debits it. Both
// carry the JSON data {"account": "...", "amount_cents": N} with N a positive
// integer; [Decode] reads it with handlers.JSON, and [Payment.Validate] holds
// these rules. The balance, in integer cents, lives at the Redis key
// "ledger:{<account>}:balance" and changes only through effects staged on the
// handler's Tx, so a balance moves exactly once per event. Producers key the
// Kafka message by the account: the balance key is then bound to the event's
// aggregate (handlers.BoundTo). A payment whose message key is not its
// account is refused as a permanent error: a copy of a payment under another
// key (or none) has its own idempotency record, and must not move the
// account's balance a second time.
package ledger

import (
	"context"
	"fmt"

	"github.com/fleetworks/fleet/handlers"
)

// Event types handled by the ledger.
const (
	TypeCaptured = "payment.captured"
	TypeRefunded = "payment.refunded"
)

// BalanceKey is the Redis key holding the balance of account, in cents.
func BalanceKey(account string) string {
	return "ledger:{" + account + "}:balance"
}

// Register routes the ledger's event types to its handlers. The ledger
// reads no projection: it takes a view only to register as every domain
// does (fleet.Domain).
func Register(r *handlers.Router, _ handlers.View) error {
	if err := r.Register(TypeCaptured, handlers.HandlerFunc(Captured)); err != nil {
		return err
	}
	return r.Register(TypeRefunded, handlers.HandlerFunc(Refunded))
}

// Captured credits the account named in the event.
func Captured(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
	p, err := decodeFor(ev)
	if err != nil {
		return err
	}
	tx.IncrBy(BalanceKey(p.Account), p.AmountCents)
	return nil
}

// Refunded debits the account named in the event.
func Refunded(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
	p, err := decodeFor(ev)
	if err != nil {
		return err
	}
	tx.IncrBy(BalanceKey(p.Account), -p.AmountCents)
	return nil
}

// decodeFor decodes a payment event and checks that it is keyed by its
// account.
func decodeFor(ev handlers.Event) (Payment, error) {
	p, err := Decode(ev.Data)
	if err != nil {
		return Payment{}, err
	}
	if ev.Key != p.Account {
		return Payment{}, handlers.Permanentf("payment for account %s arrived with message key %q: key payment events by their account", p.Account, ev.Key)
	}
	return p, nil
}

// Delta is the change a payment event makes to its account's balance, for
// checking balances from outside (tests, fleet dev's summary).
func Delta(eventType string, p Payment) (int64, error) {
	switch eventType {
	case TypeCaptured:
		return p.AmountCents, nil
	case TypeRefunded:
		return -p.AmountCents, nil
	}
	return 0, fmt.Errorf("ledger: %w %q", handlers.ErrUnknownType, eventType)
}
