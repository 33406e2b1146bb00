package ledger

import (
	"errors"
	"testing"

	"github.com/fleetworks/fleet/handlers"
)

// decodeCases is what Decode accepts and refuses, with the messages an
// operator reads in a dead letter. changed says what the decoder before
// handlers.JSON (a hand-written scanner with encoding/json behind it)
// answered where it accepted what is now refused; no case goes the other
// way. They are FuzzDecode's seeds as well.
var decodeCases = []struct {
	name    string
	data    string
	want    Payment // when wantErr is empty
	wantErr string
	changed string
}{
	{name: "usual", data: `{"account":"acc-1","amount_cents":250}`, want: Payment{"acc-1", 250}},
	{name: "spaces and another order", data: ` { "amount_cents" : 250 , "account" : "acc-1" } `, want: Payment{"acc-1", 250}},
	{name: "unknown fields ignored", data: `{"account":"a","amount_cents":1,"currency":"EUR","note":null,"ok":true,"n":-1.5e+3}`, want: Payment{"a", 1}},
	{name: "unknown nested fields ignored", data: `{"account":"a","nested":{"x":[1,{"y":2}]},"amount_cents":1}`, want: Payment{"a", 1}},
	{name: "escapes", data: `{"account":"a\u00e9\"b","amount_cents":1}`, want: Payment{`aé"b`, 1}},
	{name: "largest amount", data: `{"account":"a","amount_cents":9223372036854775807}`, want: Payment{"a", 9223372036854775807}},
	{name: "names match without regard to case", data: `{"ACCOUNT":"a","Amount_Cents":1}`, want: Payment{"a", 1}},
	{name: "names match with Unicode folding", data: "{\"account\":\"a\",\"amount_cent\u017f\":1}", want: Payment{"a", 1}},
	{name: "a repeated name", data: `{"account":"a","account":"b","amount_cents":1}`, wantErr: "payment: account: given more than once",
		changed: "accepted as account b: which of two values counts is where two JSON parsers disagree"},
	{name: "a repeated name in another case", data: `{"account":"a","ACCOUNT":"b","amount_cents":1}`, wantErr: "payment: ACCOUNT: given more than once",
		changed: "accepted as account b, as above"},
	{name: "a repeated name with Unicode folding", data: "{\"account\":\"a\",\"amount_cents\":1,\"amount_cent\u017f\":2}",
		wantErr: "payment: amount_cent\u017f: given more than once", changed: "accepted as 2, as above"},
	{name: "a repeated name's null", data: `{"account":"a","account":null,"amount_cents":1}`, wantErr: "payment: account: given more than once"},
	{name: "a repeated unknown name", data: `{"account":"a","amount_cents":1,"note":"x","note":"y"}`, wantErr: "payment: note: given more than once",
		changed: "accepted: unknown fields are not read, but a repeated name makes the payload ambiguous all the same"},

	{name: "missing account", data: `{"amount_cents":1}`, wantErr: "payment: account: missing or empty"},
	{name: "empty account", data: `{"account":"","amount_cents":1}`, wantErr: "payment: account: missing or empty"},
	{name: "null account", data: `{"account":null,"amount_cents":1}`, wantErr: "payment: account: missing or empty"},
	{name: "number account", data: `{"account":1,"amount_cents":1}`, wantErr: "payment: account: expected string, got number"},
	{name: "missing amount", data: `{"account":"a"}`, wantErr: "payment: amount_cents: missing or zero, want a positive integer"},
	{name: "null amount", data: `{"account":"a","amount_cents":null}`, wantErr: "payment: amount_cents: missing or zero, want a positive integer"},
	{name: "zero amount", data: `{"account":"a","amount_cents":0}`, wantErr: "payment: amount_cents: missing or zero, want a positive integer"},
	{name: "minus zero", data: `{"account":"a","amount_cents":-0}`, wantErr: "payment: amount_cents: missing or zero, want a positive integer"},
	{name: "negative amount", data: `{"account":"a","amount_cents":-5}`, wantErr: "payment: amount_cents: must be positive, got -5"},
	{name: "fractional amount", data: `{"account":"a","amount_cents":1.5}`, wantErr: "payment: amount_cents: expected integer, got number 1.5"},
	{name: "exponent", data: `{"account":"a","amount_cents":1e2}`, wantErr: "payment: amount_cents: expected integer, got number 1e2"},
	{name: "string amount", data: `{"account":"a","amount_cents":"100"}`, wantErr: "payment: amount_cents: expected integer, got string"},
	{name: "boolean amount", data: `{"account":"a","amount_cents":true}`, wantErr: "payment: amount_cents: expected integer, got boolean"},
	{name: "overflowing amount", data: `{"account":"a","amount_cents":99999999999999999999}`, wantErr: "payment: amount_cents: 99999999999999999999 is out of range (int64)"},
	{name: "leading zero", data: `{"account":"a","amount_cents":01}`, wantErr: "payment: payload: not JSON: invalid character '1' after object value (expecting ',' or '}') at offset 31"},
	{name: "trailing comma", data: `{"account":"a","amount_cents":1,}`, wantErr: "payment: payload: not JSON: invalid character ',' at start of value at offset 31"},
	{name: "trailing data", data: `{"account":"a","amount_cents":1}x`, wantErr: "payment: payload: not JSON: invalid character 'x' after top-level value at offset 32"},
	{name: "two payments", data: `{"account":"a","amount_cents":1}{"account":"a","amount_cents":1}`, wantErr: "payment: payload: not JSON: invalid character '{' after top-level value at offset 32"},
	{name: "control character in a string", data: "{\"account\":\"a\tb\",\"amount_cents\":1}", wantErr: "payment: account: not JSON: invalid character '\\t' in string (expecting non-control character) at offset 13"},
	{name: "cut short", data: `{"account":`, wantErr: "payment: account: not JSON: unexpected EOF at offset 11"},
	{name: "not JSON", data: `nope`, wantErr: "payment: payload: not JSON: invalid character 'o' in literal null (expecting 'u') at offset 1"},
	{name: "an array", data: `[]`, wantErr: "payment: payload: expected object, got array"},
	{name: "empty object", data: `{}`, wantErr: "payment: account: missing or empty"},
	{name: "null", data: `null`, wantErr: "payment: payload: null, nothing to decode"},
	{name: "empty", data: ``, wantErr: "payment: payload: empty, nothing to decode"},
	{name: "not UTF-8", data: "{\"account\":\"a\xff\",\"amount_cents\":1}", wantErr: "payment: account: not JSON: invalid UTF-8 at offset 13",
		changed: "decoded as account \"a\\ufffd\": encoding/json replaces invalid bytes, so that two byte strings " +
			"would name one account; RFC 8259 requires UTF-8"},
	{name: "a lone surrogate", data: `{"account":"a\ud800","amount_cents":1}`, wantErr: "payment: account: not JSON: invalid surrogate pair `\\ud800\",\"amo` in string at offset 13",
		changed: "decoded as account \"a\\ufffd\", as above"},
}

// TestDecode runs decodeCases: the value or the exact message, and every
// refusal permanent.
func TestDecode(t *testing.T) {
	for _, tt := range decodeCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.data))
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Decode = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Decode = %+v, %v; want the error %q", got, err, tt.wantErr)
			}
			if k := handlers.KindOf(err); k != handlers.KindPermanent {
				t.Errorf("kind %s, want permanent", k)
			}
		})
	}
}

// TestDecodeNamesTheField: a type error says which field, for errors.As.
func TestDecodeNamesTheField(t *testing.T) {
	_, err := Decode([]byte(`{"account":"a","amount_cents":"100"}`))
	var pe *handlers.PayloadError
	if !errors.As(err, &pe) || pe.Field != "amount_cents" {
		t.Fatalf("%v: want a PayloadError for amount_cents", err)
	}
}

// BenchmarkDecode decodes the usual payment.
func BenchmarkDecode(b *testing.B) {
	data := []byte(`{"account":"acct-0042","amount_cents":12345}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
