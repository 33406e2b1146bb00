// Package jsonkind names the kind of a JSON value for error messages, the
// one way both the structured-mode decoder and the HTTP handlers' effects
// say it.
package jsonkind

import "github.com/go-json-experiment/json/jsontext"

// Name names a JSON value's kind: "a string", "an object", "null" … and
// "not JSON" for the invalid kind.
func Name(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "not JSON"
}
