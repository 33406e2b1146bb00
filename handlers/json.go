package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Validator is implemented by payload types that check themselves after
// decoding: required fields, ranges, formats. [JSON] calls Validate on the
// decoded value and returns its error as permanent, so Validate must depend
// on the value alone (no clock, no I/O). Name the field in the error, as in
// "amount_cents: must be positive, got -5": operators read it in the dead
// letter.
type Validator interface {
	Validate() error
}

// JSON decodes an event's JSON payload (usually [Event.Data]) into a T and,
// when T implements [Validator], validates it. Every error it returns is
// permanent ([KindOf] says [KindPermanent]): retrying cannot change the
// bytes of an event. A decoding error is a [*PayloadError] naming the
// offending field when there is one; wrap it with the payload's name
// (fmt.Errorf("payment: %w", err)), which keeps it permanent.
//
// It is encoding/json's Unmarshal with these decisions on top:
//
//   - the payload must be exactly one JSON value: empty data, invalid JSON
//     and anything but whitespace after the value are refused;
//   - the payload must be UTF-8: encoding/json would replace invalid bytes
//     in strings by U+FFFD, so that two different identifiers could decode
//     to the same one;
//   - a top-level null is refused: it would leave T at its zero value and
//     look like a payload with every field missing;
//   - unknown fields are ignored, so that a producer may add a field before
//     its consumers know it: a schema that grows must not dead-letter every
//     event. Check for what must be there in Validate;
//   - as in encoding/json, field names match without regard to case, and of
//     a name given twice the last value counts; a number for an integer
//     field must be an integer in range (no fraction, no exponent), and a
//     string is never converted to a number. Refusing a repeated name would
//     take a second pass over the payload, about four times the decoding.
//
// A missing field is left at its zero value. null sets a pointer, slice or
// map to nil and leaves a string, number, boolean or struct as it was (its
// zero value, unless an earlier occurrence of its name set it). Use a
// pointer field where absent and zero must differ (a total that may be 0).
//
// JSON is safe for concurrent use.
func JSON[T any](data []byte) (T, error) {
	var v T
	if err := decodeJSON(data, &v); err != nil {
		var zero T
		return zero, err
	}
	if val, ok := any(&v).(Validator); ok {
		if err := val.Validate(); err != nil {
			var zero T
			return zero, Permanent(err)
		}
	}
	return v, nil
}

// decodeJSON unmarshals data into v (a pointer) under the rules of [JSON],
// and returns a permanent [*PayloadError] when it cannot.
func decodeJSON(data []byte, v any) error {
	switch trimmed := bytes.TrimSpace(data); {
	case len(trimmed) == 0:
		return Permanent(&PayloadError{Reason: "empty, nothing to decode"})
	case string(trimmed) == "null":
		return Permanent(&PayloadError{Reason: "null, nothing to decode"})
	case !utf8.Valid(data):
		return Permanent(&PayloadError{Reason: "not valid UTF-8"})
	}
	// Unmarshal checks that data is one whole JSON value before it decodes:
	// trailing data is a syntax error.
	if err := json.Unmarshal(data, v); err != nil {
		return Permanent(payloadError(err))
	}
	return nil
}

// PayloadError explains why [JSON] refused a payload. It arrives wrapped in
// a [*PermanentError]; errors.As finds it.
type PayloadError struct {
	// Field is the path of the offending field as the payload names it,
	// "order.total_cents" for a nested one, or empty when the problem is
	// the payload as a whole (not JSON, not UTF-8, an array for an object).
	Field string
	// Reason says what is wrong: "expected integer, got string".
	Reason string
	// Err is encoding/json's error, when the reason comes from it.
	Err error
}

func (e *PayloadError) Error() string {
	if e.Field == "" {
		return "payload: " + e.Reason
	}
	return e.Field + ": " + e.Reason
}

func (e *PayloadError) Unwrap() error { return e.Err }

// maxQuoted bounds how much of the payload an error message repeats: the
// message travels in a dead letter's headers.
const maxQuoted = 40

// payloadError translates an error of json.Unmarshal into a PayloadError
// that names the field and says what was expected, in JSON's words rather
// than Go's.
func payloadError(err error) *PayloadError {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return &PayloadError{Reason: fmt.Sprintf("not JSON: %s at byte %d", syntax, syntax.Offset), Err: err}
	case errors.As(err, &typ):
		return &PayloadError{Field: typ.Field, Reason: typeMismatch(typ.Value, typ.Type), Err: err}
	}
	return &PayloadError{Reason: err.Error(), Err: err}
}

// typeMismatch says what a field wanted and what it got. got is
// encoding/json's description of the value: "string", "bool", "array",
// "object", "number" or "number 1.5".
func typeMismatch(got string, want reflect.Type) string {
	wantKind := jsonKind(want)
	if n, ok := strings.CutPrefix(got, "number "); ok && wantKind == "integer" && isIntegerLiteral(n) {
		return fmt.Sprintf("%s is out of range (%s)", truncate(n), want)
	}
	if got == "bool" {
		got = "boolean"
	}
	return fmt.Sprintf("expected %s, got %s", wantKind, truncate(got))
}

// jsonKind names the JSON value a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "base64 string"
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return t.String()
}

// isIntegerLiteral reports whether s is a JSON number without fraction or
// exponent: then an integer field refused it for its size.
func isIntegerLiteral(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "…"
}
