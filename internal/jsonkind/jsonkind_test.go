package jsonkind

import (
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

func TestName(t *testing.T) {
	for k, want := range map[jsontext.Kind]string{'"': "a string", '0': "a number", 't': "a boolean", 'f': "a boolean",
		'n': "null", '{': "an object", '[': "an array", 0: "not JSON"} {
		if got := Name(k); got != want {
			t.Errorf("Name(%q) = %q, want %q", k, got, want)
		}
	}
}
