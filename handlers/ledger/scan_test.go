package ledger

import (
	"encoding/json"
	"fmt"
	"testing"
)

// decodeStd is Decode without the fast path: encoding/json only.
func decodeStd(data []byte) (Payment, error) {
	var raw struct {
		Account     *string         `json:"account"`
		AmountCents json.RawMessage `json:"amount_cents"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Payment{}, fmt.Errorf("decode payment: %v", err)
	}
	return check(raw.Account, raw.AmountCents)
}

var scanSeeds = []string{
	`{"account":"acc-1","amount_cents":250}`,
	` { "amount_cents" : 250 , "account" : "acc-1" } `,
	`{"account":"a","amount_cents":1,"currency":"EUR","note":null,"ok":true,"n":-1.5e+3}`,
	`{"account":"a","account":"b","amount_cents":1}`,
	`{"account":"a","account":null,"amount_cents":1}`,
	`{"Account":"a","amount_cents":1}`,
	`{"ACCOUNT":"a","AMOUNT_CENTS":1}`,
	"{\"account\":\"a\",\"amount_cent\u017f\":1}", // ſ folds to s, as encoding/json matches keys
	"{\"account\":\"a\",\"amount_cents\":1,\"amount_cent\u017f\":2}",
	`{"account":"a\u00e9","amount_cents":1}`,
	`{"account":"a\"b","amount_cents":1}`,
	`{"account":"\xff","amount_cents":1}`,
	`{"account":1,"amount_cents":1}`,
	`{"account":"a","amount_cents":"100"}`,
	`{"account":"a","amount_cents":01}`,
	`{"account":"a","amount_cents":1.}`,
	`{"account":"a","amount_cents":-0}`,
	`{"account":"a","amount_cents":1e2}`,
	`{"account":"a","amount_cents":true}`,
	`{"account":"a","amount_cents":null}`,
	`{"account":"a","amount_cents":99999999999999999999}`,
	`{"account":"a","amount_cents":1,}`,
	`{"account":"a","amount_cents":1}x`,
	`{"account":"a","nested":{"x":1},"amount_cents":1}`,
	`{"account":"a","list":[1,2],"amount_cents":1}`,
	`{}`, `[]`, `null`, ``, `{`, `{"account"}`, `{"account":}`, "{\"account\":\"a\tb\",\"amount_cents\":1}",
}

// TestScanAgreesWithEncodingJSON runs the seeds of FuzzScanPayment.
func TestScanAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range scanSeeds {
		compare(t, []byte(s))
	}
}

// FuzzScanPayment checks that the fast path never changes an answer:
// go test -fuzz FuzzScanPayment ./handlers/ledger
func FuzzScanPayment(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(compare)
}

func compare(t *testing.T, data []byte) {
	got, gotErr := Decode(data)
	want, wantErr := decodeStd(data)
	if got != want || (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: Decode = %+v, %v; encoding/json = %+v, %v", data, got, gotErr, want, wantErr)
	}
	if gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("%q: Decode error %q, encoding/json error %q", data, gotErr, wantErr)
	}
	if _, _, ok := scanPayment(data); ok && !json.Valid(data) {
		t.Fatalf("%q: the fast path accepted invalid JSON", data)
	}
}

// BenchmarkDecode compares Decode with encoding/json alone.
func BenchmarkDecode(b *testing.B) {
	data := []byte(`{"account":"acct-0042","amount_cents":12345}`)
	for _, bm := range []struct {
		name   string
		decode func([]byte) (Payment, error)
	}{{"scan", Decode}, {"encoding-json", decodeStd}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
