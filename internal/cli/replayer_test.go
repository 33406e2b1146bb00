package cli

import (
	"testing"

	"github.com/fleetworks/fleet/dedupe"
)

// TestRecordVerdict: a dead letter's event is replayed unless its record
// is done or holds another payload.
func TestRecordVerdict(t *testing.T) {
	tests := []struct {
		name  string
		rec   dedupe.Record
		found bool
		want  string
	}{
		{"no record", dedupe.Record{}, false, replayPublish},
		{"done", dedupe.Record{State: dedupe.StateDone, Fingerprint: "f"}, true, replayDone},
		{"failed before", dedupe.Record{State: dedupe.StateProcessing, Fingerprint: "f"}, true, replayPublish},
		{"another payload, done", dedupe.Record{State: dedupe.StateDone, Fingerprint: "g"}, true, replayConflict},
		{"another payload, not done", dedupe.Record{State: dedupe.StateProcessing, Fingerprint: "g"}, true, replayConflict},
	}
	for _, tt := range tests {
		if got := recordVerdict(tt.rec, tt.found, "f"); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestReplaySummary: the sentence a replay ends with counts each verdict
// once, in its words for a dry run and a replay, and tallies of several
// dead-letter topics add up.
func TestReplaySummary(t *testing.T) {
	var tally replayTally
	tally.add(replayTally{counts: map[string]int{replayPublish: 2, replayDone: 1, replayGone: 1}, unrecorded: 1})
	tally.add(replayTally{counts: map[string]int{replayPublish: 1, replayMismatch: 1, replayOtherGroup: 1, replayOtherTopic: 2}, published: 1})
	if got, want := tally.summary(10, false), "replayed 3 of 10 dead letters; skipped 1 already done, 0 undecodable, 0 repeated, 0 conflicting, 2 without a value, 3 of other groups or topics"; got != want {
		t.Errorf("summary:\n%s\nwant\n%s", got, want)
	}
	if got, want := tally.summary(10, true)[:31], "would replay 3 of 10 dead lette"; got != want {
		t.Errorf("dry run summary starts %q, want %q", got, want)
	}
	if w := tally.warning(); w != "warning: 1 dead letter ran (they count attempts) but no idempotency record of theirs is in this Redis: is it the group's Redis?" {
		t.Errorf("warning: %q", w)
	}
	if w := (&replayTally{}).warning(); w != "" {
		t.Errorf("warning without unrecorded dead letters: %q", w)
	}
}
