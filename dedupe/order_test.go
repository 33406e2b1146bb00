package dedupe

import (
	"testing"

	"github.com/fleetworks/fleet/handlers"
)

// TestGateInRecordSlot: a key's gate and queue lie in the Redis Cluster
// slot of the key's idempotency records, whatever the key holds, so that a
// script may touch them together.
func TestGateInRecordSlot(t *testing.T) {
	for _, key := range []string{"acct-1", "a}b", "{x}", "}", "}x", "", "a{b}c", "ü:{", "with space", "x\n}y"} {
		if !Gateable(key) {
			if key != "" && key[0] != '}' {
				t.Errorf("key %q is not gateable", key)
			}
			continue
		}
		ref := GateRef{Group: "g", Topic: "t", Partition: 7, Key: key}
		record := RecordKey(key, handlers.IdempotencyKey("g", "s", "id"))
		for _, k := range []string{ref.Gate(), ref.Gate() + ":q"} {
			if slot(k) != slot(record) {
				t.Errorf("key %q: %s in slot %d, its record %s in slot %d", key, k, slot(k), record, slot(record))
			}
		}
	}
}

// TestOrderScope: scopes differ whenever group, topic or partition do,
// separators in names included.
func TestOrderScope(t *testing.T) {
	seen := map[string]string{}
	for _, c := range []struct {
		group, topic string
		partition    int
	}{{"g", "t", 0}, {"g", "t", 1}, {"g:t", "", 0}, {"g", ":t", 0}, {"", "g:t", 0}, {"g", "t1", 0}, {"g", "t", 10}, {"g1", "t", 0}} {
		s := OrderScope(c.group, c.topic, c.partition)
		if len(s) != identityLen {
			t.Fatalf("scope %q: %d characters", s, len(s))
		}
		name := c.group + "|" + c.topic + "|" + string(rune('0'+c.partition))
		if prev, ok := seen[s]; ok {
			t.Fatalf("%s and %s share scope %s", prev, name, s)
		}
		seen[s] = name
	}
}
