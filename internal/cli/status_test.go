package cli

import (
	"strings"
	"testing"

	"github.com/fleetworks/fleet/consumer"
)

// TestStatusShowsGatedKeys: fleet status prints the gated keys /status
// reports, held first, with their state and age.
func TestStatusShowsGatedKeys(t *testing.T) {
	st := consumer.Status{Group: "ledger", Gates: &consumer.GateStatus{Gated: 2, Held: 1, OldestGateSeconds: 90, OldestHeldSeconds: 30,
		Keys: []consumer.GatedKey{
			{Key: "acct-7", Topic: "payments", Partition: 3, State: "held", Head: "N3kVb7yQ0cXr2mS8aPq1Zw", Parked: 4, AgeSeconds: 30},
			{Key: "acct-9", Topic: "payments", Partition: 1, State: "parked", Head: "Zw1qPa8Sm2rXc0Qy7bVk3N", Parked: 1, AgeSeconds: 90},
		}}}
	var b strings.Builder
	if err := printStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"gated keys: 2 (held: 1; oldest gate 1m30s, oldest held 30s)", "acct-7", "held", "acct-9", "parked"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "acct-7") > strings.Index(out, "acct-9") {
		t.Errorf("the held key is not first:\n%s", out)
	}
}
