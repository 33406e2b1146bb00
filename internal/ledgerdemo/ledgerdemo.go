// Package ledgerdemo is the demo of the fleet command's `dev`: the ledger
// stream of package internal/demo (payments with duplicates and poison
// messages), and a check that every account's balance is the sum of its
// unique events.
package ledgerdemo

import (
	"context"
	"fmt"
	"strconv"

	"github.com/fleetworks/fleet"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
)

// Demo is the ledger's demo for fleet.DevDemo.
func Demo() fleet.Demo {
	return fleet.Demo{
		Topic:  "payments",
		Stream: stream,
		Example: fleet.DemoExample{Type: ledger.TypeCaptured, Key: "acct-you",
			Data: `{"account":"acct-you","amount_cents":1250}`, Look: "GET 'ledger:{acct-you}:balance'"},
	}
}

func stream(size fleet.DemoSize) (fleet.DemoRun, error) {
	s, err := demo.New(size.Events, size.Keys, size.Duplicates, size.Seed)
	if err != nil {
		return fleet.DemoRun{}, err
	}
	run := fleet.DemoRun{Source: demo.Source, Unique: s.Unique, Duplicates: s.Duplicates, Poison: s.Poison,
		Check: func(ctx context.Context, view handlers.View) (fleet.DemoCheck, error) { return check(ctx, view, s) }}
	for _, m := range s.Messages {
		fm := fleet.Message{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			fm.Headers = append(fm.Headers, fleet.Header{Key: h.Key, Value: h.Value})
		}
		run.Messages = append(run.Messages, fm)
	}
	return run, nil
}

// check compares every account's balance with the sum of its unique events.
func check(ctx context.Context, view handlers.View, s *demo.Stream) (fleet.DemoCheck, error) {
	var c fleet.DemoCheck
	for _, a := range s.Accounts {
		v, err := view.Get(ctx, ledger.BalanceKey(a))
		if err != nil {
			return c, fmt.Errorf("read balance of %s: %w", a, err)
		}
		bal := int64(0)
		if v != "" {
			if bal, err = strconv.ParseInt(v, 10, 64); err != nil {
				return c, fmt.Errorf("balance of %s: %w", a, err)
			}
		}
		if bal != s.Want[a] {
			c.Problems = append(c.Problems, fmt.Sprintf("balance of %s is %d, want %d", a, bal, s.Want[a]))
		}
	}
	if len(c.Problems) == 0 {
		c.Summary = fmt.Sprintf("all %d balances match the sum of the unique events", len(s.Accounts))
	} else {
		c.Summary = fmt.Sprintf("%d of %d balances do not match", len(c.Problems), len(s.Accounts))
	}
	return c, nil
}
