package effects_test

import (
	"errors"
	"testing"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/effects"
)

func TestCheckBound(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"{acct}n", true},
		{"ledger:{acct}:balance", true},
		{"{other}n", false},
		{"acct", false},
		{"", false},
		{"{}{acct}n", false},
		{"{ACCT}n", false},
		{"fleet:{acct}n", false},
		{"fleet:idem:{acct}:SaVXVzEnuvP_ARWBzQmjfA", false},
	}
	for _, tt := range tests {
		err := effects.CheckBound("acct", []handlers.Op{incr("{acct}ok", 1), incr(tt.key, 1)})
		var ee *effects.Error
		switch {
		case tt.ok && err != nil:
			t.Errorf("%q: %v, want bound", tt.key, err)
		case !tt.ok && (!errors.As(err, &ee) || ee.Index != 1 || !errors.Is(err, effects.ErrUnbound)):
			t.Errorf("%q: %v, want effect 1 refused with ErrUnbound", tt.key, err)
		}
	}
}
