package handlers

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
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
// It decodes as encoding/json/v2 does (github.com/go-json-experiment/json,
// its mirror for the Go releases before it), with these decisions:
//
//   - the payload must be exactly one JSON value: empty data, invalid JSON
//     and anything but whitespace after the value are refused, and so is a
//     top-level null, which would leave T at its zero value and look like a
//     payload with every field missing;
//   - strings must be UTF-8 without lone surrogates: encoding/json (v1)
//     would replace such bytes by U+FFFD, so that two different identifiers
//     could decode to the same one;
//   - a name given twice in one object is refused: which of the values
//     counts is where two JSON parsers disagree;
//   - unknown fields are ignored, so that a producer may add a field before
//     its consumers know it: a schema that grows must not dead-letter every
//     event. Check for what must be there in Validate;
//   - names match a field without regard to case, as strings.EqualFold
//     compares them (as encoding/json v1 does): {"Account": …} fills the
//     field tagged "account", and counts as a second "account";
//   - a number for an integer field must be an integer in range (no
//     fraction, no exponent), and a string is never read as a number.
//
// A missing field and null leave the field at its zero value; use a
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
	}
	// v2 refuses invalid UTF-8, repeated names and trailing data by
	// default; MatchCaseSensitiveDelimiter keeps "amount_cents" from
	// matching "amountCents", which v2 alone would allow.
	err := json.Unmarshal(data, v, json.MatchCaseInsensitiveNames(true), jsonv1.MatchCaseSensitiveDelimiter(true))
	if err != nil {
		return Permanent(payloadError(err))
	}
	return nil
}

// PayloadError explains why [JSON] refused a payload. It arrives wrapped in
// a [*PermanentError]; errors.As finds it.
type PayloadError struct {
	// Field is the path of the offending field as the payload names it,
	// "items.0.price" for a nested one, or empty when the problem is the
	// payload as a whole (not JSON, an array for an object).
	Field string
	// Reason says what is wrong: "expected integer, got string".
	Reason string
	// Err is the decoder's own error, when the reason comes from it.
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
	var syntax *jsontext.SyntacticError
	var semantic *json.SemanticError
	switch {
	case errors.As(err, &syntax) && errors.Is(syntax.Err, jsontext.ErrDuplicateName):
		return &PayloadError{Field: fieldPath(syntax.JSONPointer), Reason: "given more than once", Err: err}
	case errors.As(err, &syntax):
		return &PayloadError{Field: fieldPath(syntax.JSONPointer),
			Reason: fmt.Sprintf("not JSON: %v at offset %d", syntax.Err, syntax.ByteOffset), Err: err}
	case errors.As(err, &semantic) && semantic.GoType != nil && semantic.JSONKind != 0:
		return &PayloadError{Field: fieldPath(semantic.JSONPointer), Reason: typeMismatch(semantic), Err: err}
	case errors.As(err, &semantic) && semantic.Err != nil:
		return &PayloadError{Field: fieldPath(semantic.JSONPointer), Reason: semantic.Err.Error(), Err: err}
	}
	return &PayloadError{Reason: err.Error(), Err: err}
}

// fieldPath turns a JSON Pointer ("/items/0/price") into the dotted path
// an error message shows ("items.0.price").
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// typeMismatch says what a field wanted and what it got.
func typeMismatch(e *json.SemanticError) string {
	want := jsonKind(e.GoType)
	got := kindName(e.JSONKind)
	if e.JSONKind == '0' && want == "integer" {
		n := string(e.JSONValue)
		if isIntegerLiteral(n) {
			return fmt.Sprintf("%s is out of range (%s)", truncate(n), e.GoType)
		}
		if n != "" {
			got += " " + truncate(n)
		}
	}
	if e.Err != nil && !errors.Is(e.Err, strconv.ErrSyntax) && !errors.Is(e.Err, strconv.ErrRange) {
		return fmt.Sprintf("expected %s, got %s: %v", want, got, e.Err)
	}
	return fmt.Sprintf("expected %s, got %s", want, got)
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

// kindName names a JSON kind as the JSON grammar does.
func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "boolean"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return k.String()
}

// isIntegerLiteral reports whether s is a JSON number without fraction or
// exponent: then an integer field refused it for its size or its sign.
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
