package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/handlertest"
	"github.com/fleetworks/fleet/handlers/ledger"
)

func TestHandlers(t *testing.T) {
	r := handlers.NewRouter()
	if err := ledger.Register(r, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		typ       string
		data      string
		wantDelta int64
		wantKind  handlers.Kind // empty: success
		key       string        // the message key; acc-1 when empty
	}{
		{"capture", ledger.TypeCaptured, `{"account":"acc-1","amount_cents":250}`, 250, "", ""},
		{"refund", ledger.TypeRefunded, `{"account":"acc-1","amount_cents":40}`, -40, "", ""},
		{"keyed by another account", ledger.TypeCaptured, `{"account":"acc-1","amount_cents":1}`, 0, handlers.KindPermanent, "ACC-1"},
		{"keyed by nothing", ledger.TypeCaptured, `{"account":"acc-1","amount_cents":1}`, 0, handlers.KindPermanent, "-"},
		{"missing account", ledger.TypeCaptured, `{"amount_cents":1}`, 0, handlers.KindPermanent, ""},
		{"empty account", ledger.TypeCaptured, `{"account":"","amount_cents":1}`, 0, handlers.KindPermanent, ""},
		{"missing amount", ledger.TypeCaptured, `{"account":"a"}`, 0, handlers.KindPermanent, ""},
		{"zero amount", ledger.TypeCaptured, `{"account":"a","amount_cents":0}`, 0, handlers.KindPermanent, ""},
		{"negative amount", ledger.TypeRefunded, `{"account":"a","amount_cents":-5}`, 0, handlers.KindPermanent, ""},
		{"fractional amount", ledger.TypeCaptured, `{"account":"a","amount_cents":1.5}`, 0, handlers.KindPermanent, ""},
		{"string amount", ledger.TypeCaptured, `{"account":"a","amount_cents":"100"}`, 0, handlers.KindPermanent, ""},
		{"overflowing amount", ledger.TypeCaptured, `{"account":"a","amount_cents":99999999999999999999}`, 0, handlers.KindPermanent, ""},
		{"not json", ledger.TypeCaptured, `nope`, 0, handlers.KindPermanent, ""},
		{"unknown type", "payment.voided", `{"account":"a","amount_cents":1}`, 0, handlers.KindUnknownType, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := tt.key
			switch key {
			case "":
				key = "acc-1"
			case "-":
				key = ""
			}
			tx := handlers.NewTx("k", 1, 1)
			err := r.Handle(context.Background(), handlers.Event{ID: "p", Type: tt.typ, Key: key, Data: []byte(tt.data)}, tx)
			if tt.wantKind != "" {
				if err == nil {
					t.Fatalf("want a %s error, got nil", tt.wantKind)
				}
				if k := handlers.KindOf(err); k != tt.wantKind {
					t.Fatalf("kind = %s, want %s (%v)", k, tt.wantKind, err)
				}
				if len(tx.Ops()) != 0 {
					t.Fatalf("a failed run staged %v", tx.Ops())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ops := tx.Ops()
			want := handlers.Op{Kind: handlers.OpIncrBy, Key: "ledger:{acc-1}:balance", Delta: tt.wantDelta}
			if len(ops) != 1 || ops[0] != want {
				t.Fatalf("ops = %+v, want [%+v]", ops, want)
			}
		})
	}
}

func TestDelta(t *testing.T) {
	p := ledger.Payment{Account: "a", AmountCents: 7}
	if d, _ := ledger.Delta(ledger.TypeCaptured, p); d != 7 {
		t.Fatalf("captured delta %d", d)
	}
	if d, _ := ledger.Delta(ledger.TypeRefunded, p); d != -7 {
		t.Fatalf("refunded delta %d", d)
	}
	if _, err := ledger.Delta("x", p); !errors.Is(err, handlers.ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
}

// TestWithKit runs the ledger through the handler test kit: 300 payments
// over 7 accounts, each delivered twice, accounts interleaved; every
// balance is the sum of the unique payments, and a refused payment changes
// nothing.
func TestWithKit(t *testing.T) {
	r := handlers.NewRouter()
	if err := ledger.Register(r, nil); err != nil {
		t.Fatal(err)
	}
	k := handlertest.New(t, r, 7)
	want := map[string]int64{}
	var evs []handlers.Event
	for i := range 300 {
		acct := fmt.Sprintf("acct-%d", i%7)
		typ, sign := ledger.TypeCaptured, int64(1)
		if i%4 == 0 {
			typ, sign = ledger.TypeRefunded, -1
		}
		cents := int64(100 + i)
		want[acct] += sign * cents
		evs = append(evs, handlers.Event{ID: fmt.Sprintf("p-%d", i), Source: "payments-api", Type: typ, Key: acct,
			Data: []byte(fmt.Sprintf(`{"account":%q,"amount_cents":%d}`, acct, cents))})
	}
	bad := handlers.Event{ID: "neg", Source: "payments-api", Type: ledger.TypeCaptured, Key: "acct-0",
		Data: []byte(`{"account":"acct-0","amount_cents":-5}`)}
	k.Deliver(append(evs, bad)...)
	k.AssertAppliedOnce(append(evs, bad)...)
	if err := k.Err(bad); handlers.KindOf(err) != handlers.KindPermanent {
		t.Errorf("negative amount: %v, want a permanent error", err)
	}
	for acct, v := range want {
		k.AssertState(handlertest.Expect{Key: ledger.BalanceKey(acct), Value: fmt.Sprint(v)})
	}
}
