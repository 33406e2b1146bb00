package ledger

import (
	"errors"
	"fmt"

	"github.com/fleetworks/fleet/handlers"
)

// Payment is the data of a payment event.
type Payment struct {
	Account     string `json:"account"`
	AmountCents int64  `json:"amount_cents"`
}

// Validate checks what the field types cannot: an account is named and the
// amount is a positive number of cents. [handlers.JSON] calls it. A missing
// amount and 0 are refused alike, so AmountCents needs no pointer.
func (p Payment) Validate() error {
	switch {
	case p.Account == "":
		return errors.New("account: missing or empty")
	case p.AmountCents == 0:
		return errors.New("amount_cents: missing or zero, want a positive integer")
	case p.AmountCents < 0:
		return fmt.Errorf("amount_cents: must be positive, got %d", p.AmountCents)
	}
	return nil
}

// Decode reads a payment from an event's data: [handlers.JSON], which
// validates it. Every error it returns is permanent, and names the field
// at fault: "payment: amount_cents: expected integer, got string".
func Decode(data []byte) (Payment, error) {
	p, err := handlers.JSON[Payment](data)
	if err != nil {
		return Payment{}, fmt.Errorf("payment: %w", err)
	}
	return p, nil
}
