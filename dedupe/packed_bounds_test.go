package dedupe

import (
	"fmt"
	"strings"
	"testing"
)

// TestPackedBoundsMatchTheScripts: the bounds the Go side documents are
// the ones the scripts use.
func TestPackedBoundsMatchTheScripts(t *testing.T) {
	want := fmt.Sprintf("local PACKED_CAP, PACKED_MAX, PACKED_DEPTH = %d, %d, %d\n", packedCap, packedMaxValue, packedDepth)
	if !strings.HasPrefix(strings.TrimPrefix(luaPacked, "\n"), want) {
		t.Fatalf("luaPacked does not start with %q", want)
	}
}

// TestIsBucketKey tells buckets from record keys and others.
func TestIsBucketKey(t *testing.T) {
	for key, want := range map[string]bool{
		"fleet:idem:{acct-1}:~20551":                 true,
		"fleet:idem:{acct-1}:~20551.0110":            true,
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
