package ledger

import (
	"strings"
	"unicode/utf8"
)

// scanPayment reads the usual shape of a payment without reflection: a flat
// JSON object whose values are strings without escapes, numbers, booleans
// or null. It returns the account (nil when absent or null, as
// encoding/json leaves a *string) and the raw amount_cents token (nil when
// absent). It reports false for anything else: malformed JSON, escapes,
// nested values, invalid UTF-8, a key that matches a field only without
// regard to case, a non-string account or a string amount. The caller then
// decodes with encoding/json, so the fast path changes no answer.
func scanPayment(data []byte) (account *string, amount []byte, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, nil, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return nil, nil, skipSpace(data, i+1) == len(data)
	}
	for {
		var key []byte
		if key, i, ok = scanString(data, i); !ok {
			return nil, nil, false
		}
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != ':' {
			return nil, nil, false
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return nil, nil, false
		}
		start := i
		isString := data[i] == '"'
		var str []byte
		if isString {
			str, i, ok = scanString(data, i)
		} else {
			i, ok = scanLiteral(data, i)
		}
		if !ok {
			return nil, nil, false
		}
		switch k := string(key); {
		case k == "account":
			switch {
			case isString:
				s := string(str)
				account = &s
			case string(data[start:i]) == "null":
				account = nil
			default:
				return nil, nil, false
			}
		case k == "amount_cents":
			if isString {
				return nil, nil, false
			}
			amount = data[start:i]
		case strings.EqualFold(k, "account"), strings.EqualFold(k, "amount_cents"):
			return nil, nil, false
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return nil, nil, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return account, amount, skipSpace(data, i+1) == len(data)
		default:
			return nil, nil, false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString reads a string without escapes starting at data[i] == '"' and
// returns its contents and the index after the closing quote.
func scanString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, j, false
		}
	}
	return nil, len(data), false
}

// scanLiteral reads a JSON number, true, false or null at data[i] and
// returns the index after it.
func scanLiteral(data []byte, i int) (int, bool) {
	for _, word := range [...]string{"true", "false", "null"} {
		if len(data)-i >= len(word) && string(data[i:i+len(word)]) == word {
			return i + len(word), true
		}
	}
	// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
	j := i
	if j < len(data) && data[j] == '-' {
		j++
	}
	switch {
	case j < len(data) && data[j] == '0':
		j++
	case j < len(data) && data[j] >= '1' && data[j] <= '9':
		j = digits(data, j)
	default:
		return i, false
	}
	if j < len(data) && data[j] == '.' {
		k := digits(data, j+1)
		if k == j+1 {
			return i, false
		}
		j = k
	}
	if j < len(data) && (data[j] == 'e' || data[j] == 'E') {
		j++
		if j < len(data) && (data[j] == '+' || data[j] == '-') {
			j++
		}
		k := digits(data, j)
		if k == j {
			return i, false
		}
		j = k
	}
	return j, true
}

func digits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}
