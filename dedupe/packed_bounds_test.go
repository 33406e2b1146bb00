package dedupe

import (
	"fmt"
	"strings"
	"testing"
)

// TestPackedBoundsMatchTheScripts: the bound the Go side documents is the
// one the scripts use.
func TestPackedBoundsMatchTheScripts(t *testing.T) {
	want := fmt.Sprintf("local PACKED_MAX = %d\n", packedMaxValue)
	if !strings.HasPrefix(strings.TrimPrefix(luaPacked, "\n"), want) {
		t.Fatalf("luaPacked does not start with %q", want)
	}
}

// TestIsBucketKey tells buckets from record keys and others.
func TestIsBucketKey(t *testing.T) {
	for key, want := range map[string]bool{
		"fleet:idem:{acct-1}:~20551":                 true,
		"fleet:idem:{acct-1}:~20551.0110":            false,
		"fleet:idem:{a}:~b}:~20551":                  true,
		"fleet:idem:{acct-1}:SaVXVzEnuvP_ARWBzQmjfA": false,
		"fleet:idem:{}:~1":                           false,
		"fleet:idem:slice":                           false,
		"fleet:order:{acct-1}:~1":                    false,
	} {
		if got := isBucketKey(key); got != want {
			t.Errorf("isBucketKey(%q) = %v, want %v", key, got, want)
		}
	}
}
