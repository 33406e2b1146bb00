package handlers_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/fleetworks/fleet/handlers"
)

// order is a payload with a field of each JSON kind, a nested object and a
// rule of its own.
type order struct {
	ID    string   `json:"id"`
	Total *int64   `json:"total_cents"`
	Qty   uint8    `json:"qty"`
	Price float64  `json:"price"`
	Gift  bool     `json:"gift"`
	Tags  []string `json:"tags"`
	Items []item   `json:"items"`
	Ship  struct {
		Zip string `json:"zip"`
	} `json:"ship"`
}

type item struct {
	N int `json:"n"`
}

func (o order) Validate() error {
	if o.ID == "" {
		return errors.New("id: required")
	}
	return nil
}

func total(n int64) *int64 { return &n }

// TestJSONDecisions: what JSON accepts and refuses, and what its errors say.
func TestJSONDecisions(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    order  // when wantErr is empty
		wantErr string // the whole message
		field   string // PayloadError.Field; "-" when the error is Validate's
	}{
		{name: "minimal", data: `{"id":"o-1"}`, want: order{ID: "o-1"}},
		{name: "every field", data: `{"id":"o","total_cents":0,"qty":3,"price":1.5,"gift":true,"tags":["a"],"ship":{"zip":"75001"}}`,
			want: order{ID: "o", Total: total(0), Qty: 3, Price: 1.5, Gift: true, Tags: []string{"a"}, Ship: struct {
				Zip string `json:"zip"`
			}{"75001"}}},
		{name: "whitespace around the value", data: " \n{\"id\":\"o\"}\t ", want: order{ID: "o"}},
		{name: "escapes", data: `{"id":"o\u00e9\""}`, want: order{ID: `oé"`}},
		{name: "unknown fields are ignored", data: `{"id":"o","coupon":"X","meta":{"a":[1,{"b":null}]}}`, want: order{ID: "o"}},
		{name: "names match without regard to case", data: `{"ID":"o"}`, want: order{ID: "o"}},
		{name: "a field of an element", data: `{"id":"o","items":[{"n":1}]}`, want: order{ID: "o", Items: []item{{N: 1}}}},
		{name: "null leaves a field unset", data: `{"id":"o","total_cents":null}`, want: order{ID: "o"}},

		{name: "empty", data: ``, wantErr: "payload: empty, nothing to decode"},
		{name: "only whitespace", data: " \n", wantErr: "payload: empty, nothing to decode"},
		{name: "null", data: ` null `, wantErr: "payload: null, nothing to decode"},
		{name: "not JSON", data: `nope`, wantErr: "payload: not JSON: invalid character 'o' in literal null (expecting 'u') at offset 1"},
		{name: "cut short", data: `{"id":"o"`, wantErr: "payload: not JSON: unexpected EOF at offset 9"},
		{name: "trailing data", data: `{"id":"o"} x`, wantErr: "payload: not JSON: invalid character 'x' after top-level value at offset 11"},
		{name: "two values", data: `{"id":"o"}{"id":"p"}`, wantErr: "payload: not JSON: invalid character '{' after top-level value at offset 10"},
		{name: "not UTF-8", data: "{\"id\":\"\xff\"}", wantErr: "id: not JSON: invalid UTF-8 at offset 7", field: "id"},
		{name: "a lone surrogate", data: `{"id":"\udc00"}`, wantErr: "id: not JSON: invalid surrogate pair `\\udc00\"}` in string at offset 7", field: "id"},
		{name: "a repeated name", data: `{"id":"a","id":"b"}`, wantErr: "id: given more than once", field: "id"},
		{name: "a repeated name in another case", data: `{"id":"a","ID":"b"}`, wantErr: "ID: given more than once", field: "ID"},
		{name: "a repeated unknown name", data: `{"id":"a","x":1,"x":2}`, wantErr: "x: given more than once", field: "x"},
		{name: "a repeated name in a nested object", data: `{"id":"a","ship":{"zip":"1","zip":"2"}}`, wantErr: "ship.zip: given more than once", field: "ship.zip"},
		{name: "names match as strings.EqualFold, not ignoring _", data: `{"id":"o","totalcents":5}`, want: order{ID: "o"}},
		{name: "array for the object", data: `[]`, wantErr: "payload: expected object, got array"},
		{name: "string for an integer", data: `{"id":"o","total_cents":"100"}`, wantErr: "total_cents: expected integer, got string", field: "total_cents"},
		{name: "fraction for an integer", data: `{"id":"o","total_cents":1.5}`, wantErr: "total_cents: expected integer, got number 1.5", field: "total_cents"},
		{name: "exponent for an integer", data: `{"id":"o","total_cents":1e2}`, wantErr: "total_cents: expected integer, got number 1e2", field: "total_cents"},
		{name: "integer out of range", data: `{"id":"o","total_cents":99999999999999999999}`, wantErr: "total_cents: 99999999999999999999 is out of range (int64)", field: "total_cents"},
		{name: "negative for an unsigned", data: `{"id":"o","qty":-1}`, wantErr: "qty: -1 is out of range (uint8)", field: "qty"},
		{name: "too big for a byte", data: `{"id":"o","qty":300}`, wantErr: "qty: 300 is out of range (uint8)", field: "qty"},
		{name: "boolean for a string", data: `{"id":true}`, wantErr: "id: expected string, got boolean", field: "id"},
		{name: "number for a string", data: `{"id":7}`, wantErr: "id: expected string, got number", field: "id"},
		{name: "string for a boolean", data: `{"id":"o","gift":"yes"}`, wantErr: "gift: expected boolean, got string", field: "gift"},
		{name: "object for an array", data: `{"id":"o","tags":{}}`, wantErr: "tags: expected array, got object", field: "tags"},
		{name: "nested field", data: `{"id":"o","ship":{"zip":75001}}`, wantErr: "ship.zip: expected string, got number", field: "ship.zip"},
		{name: "field of an element", data: `{"id":"o","items":[{"n":1},{"n":"2"}]}`, wantErr: "items.1.n: expected integer, got string", field: "items.1.n"},
		{name: "long value cut in the message", data: `{"id":"o","total_cents":` + strings.Repeat("9", 100) + `}`,
			wantErr: "total_cents: " + strings.Repeat("9", 40) + "… is out of range (int64)", field: "total_cents"},
		{name: "Validate refuses", data: `{"total_cents":5}`, wantErr: "id: required", field: "-"},
		{name: "Validate refuses null for a required field", data: `{"id":null}`, wantErr: "id: required", field: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := handlers.JSON[order]([]byte(tt.data))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("decoded %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %+v, want %q", got, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error %q, want %q", err, tt.wantErr)
			}
			if k := handlers.KindOf(err); k != handlers.KindPermanent {
				t.Errorf("kind %s, want permanent", k)
			}
			if !reflect.DeepEqual(got, order{}) {
				t.Errorf("a refused payload returned %+v, want the zero value", got)
			}
			var pe *handlers.PayloadError
			switch isPayload := errors.As(err, &pe); {
			case tt.field == "-" && isPayload:
				t.Errorf("Validate's error came back as a PayloadError: %#v", pe)
			case tt.field != "-" && !isPayload:
				t.Errorf("no PayloadError in %#v", err)
			case isPayload && pe.Field != tt.field:
				t.Errorf("field %q, want %q", pe.Field, tt.field)
			}
		})
	}
}

// TestJSONKeepsItsCause: a handler that wraps the error keeps it permanent,
// and the decoder's error stays reachable.
func TestJSONKeepsItsCause(t *testing.T) {
	_, err := handlers.JSON[order]([]byte(`{"id":`))
	err = fmt.Errorf("order: %w", err)
	var syntax *jsontext.SyntacticError
	if !errors.As(err, &syntax) || handlers.KindOf(err) != handlers.KindPermanent {
		t.Fatalf("%v: want a permanent error wrapping a *jsontext.SyntacticError", err)
	}
}

// TestJSONOtherShapes: T need not be a struct, nor implement Validator.
func TestJSONOtherShapes(t *testing.T) {
	if got, err := handlers.JSON[[]int]([]byte(`[1,2]`)); err != nil || !reflect.DeepEqual(got, []int{1, 2}) {
		t.Errorf("[]int: %v, %v", got, err)
	}
	if got, err := handlers.JSON[map[string]int]([]byte(`{"a":1}`)); err != nil || got["a"] != 1 {
		t.Errorf("map: %v, %v", got, err)
	}
	if _, err := handlers.JSON[[]int]([]byte(`{"a":1}`)); err == nil || err.Error() != "payload: expected array, got object" {
		t.Errorf("object for []int: %v", err)
	}
}
