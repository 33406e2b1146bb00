package ledger

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fleetworks/fleet/handlers"
)

// FuzzDecode feeds arbitrary data to the payment decoder (handlers.JSON and
// Payment.Validate): it must never panic; every refusal is permanent,
// returns no payment, and blames a wrong type only on the payload or a
// payment's field; what it accepts is UTF-8 JSON with an account and a
// positive amount, agrees with encoding/json on the same input, and decodes
// to itself once encoded again.
func FuzzDecode(f *testing.F) {
	for _, tt := range decodeCases {
		f.Add([]byte(tt.data))
	}
	for _, s := range []string{
		`{"account":"a\"b","amount_cents":9223372036854775807}`,
		` { "account" : "a" , "amount_cents" : 7 , "extra" : [1,{"x":2}] } `,
		`{"account":{"id":"a"},"amount_cents":1}`,
		`{"account":"a","amount_cents":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			checkRefusal(t, data, p, err)
			return
		}
		if p.Account == "" || p.AmountCents <= 0 {
			t.Fatalf("accepted %q as %+v", data, p)
		}
		if !json.Valid(data) || !utf8.Valid(data) {
			t.Fatalf("accepted %q, which is not UTF-8 JSON", data)
		}
		var raw struct {
			Account     string `json:"account"`
			AmountCents int64  `json:"amount_cents"`
		}
		if json.Unmarshal(data, &raw) == nil && (raw.Account != p.Account || raw.AmountCents != p.AmountCents) {
			t.Fatalf("%q: decoded %+v, encoding/json reads %+v", data, p, raw)
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if q, err := Decode(again); err != nil || q != p {
			t.Fatalf("%q: decoded %+v, encoded %s, decoded again %+v, %v", data, p, again, q, err)
		}
	})
}

// checkRefusal checks what Decode returned for data it refused.
func checkRefusal(t *testing.T, data []byte, p Payment, err error) {
	t.Helper()
	if k := handlers.KindOf(err); k != handlers.KindPermanent {
		t.Fatalf("%q: a %s error, want permanent: %v", data, k, err)
	}
	if p != (Payment{}) {
		t.Fatalf("%q: refused (%v) but returned %+v", data, err, p)
	}
	// Unknown fields are not read, so a value of the wrong type can only be
	// the payload (not an object) or one of a payment's fields, its name
	// spelled in any case.
	var pe *handlers.PayloadError
	typeErr := errors.As(err, &pe) && (strings.HasPrefix(pe.Reason, "expected ") || strings.Contains(pe.Reason, " is out of range "))
	if typeErr && pe.Field != "" && !strings.EqualFold(pe.Field, "account") && !strings.EqualFold(pe.Field, "amount_cents") {
		t.Fatalf("%q: a type error for %q, which a payment does not have: %v", data, pe.Field, err)
	}
}
