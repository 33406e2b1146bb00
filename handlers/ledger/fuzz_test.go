package ledger

import (
	"encoding/json"
	"testing"
)

// FuzzDecode feeds arbitrary data to the payment decoder: it must never
// panic; what it accepts has an account and a positive amount, and agrees
// with encoding/json on the same input.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"account":"acct-1","amount_cents":1250}`,
		`{"amount_cents":5,"account":"a"}`,
		`{"account":"a","amount_cents":-5}`,
		`{"account":"a","amount_cents":1.5}`,
		`{"account":"a\"b","amount_cents":9223372036854775807}`,
		` { "account" : "a" , "amount_cents" : 7 , "extra" : [1,{"x":2}] } `,
		`{"account":"a"}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			return
		}
		if p.Account == "" || p.AmountCents <= 0 {
			t.Fatalf("accepted %q as %+v", data, p)
		}
		var raw struct {
			Account     string `json:"account"`
			AmountCents int64  `json:"amount_cents"`
		}
		if json.Unmarshal(data, &raw) == nil && (raw.Account != p.Account || raw.AmountCents != p.AmountCents) {
			t.Fatalf("%q: decoded %+v, encoding/json reads %+v", data, p, raw)
		}
	})
}
