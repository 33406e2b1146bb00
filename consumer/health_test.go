package consumer

import (
	"strings"
	"testing"
	"time"
)

// TestHealthy checks when an engine calls itself wedged: a generation loop
// that stopped going round, or a drain past its budget; waiting outside a
// generation is not wedged.
func TestHealthy(t *testing.T) {
	cfg := DefaultConfig()
	e := &Engine{cfg: cfg}
	if err := e.Healthy(); err != nil {
		t.Fatalf("outside a generation: %v", err)
	}
	e.joined.Store(true)
	e.alive.Store(time.Now().UnixNano())
	if err := e.Healthy(); err != nil {
		t.Fatalf("loop just went round: %v", err)
	}
	e.alive.Store(time.Now().Add(-time.Minute).UnixNano())
	if err := e.Healthy(); err == nil || !strings.Contains(err.Error(), "generation loop has not gone round") {
		t.Fatalf("loop stuck for a minute: %v", err)
	}
	e.draining.Store(time.Now().Add(-5 * time.Second).UnixNano())
	if err := e.Healthy(); err != nil {
		t.Fatalf("draining within budget: %v", err)
	}
	e.draining.Store(time.Now().Add(-cfg.DrainTimeout - hungGrace - 11*time.Second).UnixNano())
	if err := e.Healthy(); err == nil || !strings.Contains(err.Error(), "drain running") {
		t.Fatalf("drain past its budget: %v", err)
	}
}

// TestErrorRing keeps the newest entries, newest first.
func TestErrorRing(t *testing.T) {
	var r errorRing
	if got := r.newestFirst(); len(got) != 0 {
		t.Fatalf("empty ring: %v", got)
	}
	for i := range errorRingSize + 5 {
		r.add(ErrorEntry{What: string(rune('a' + i%26)), Attempt: i})
	}
	got := r.newestFirst()
	if len(got) != errorRingSize || got[0].Attempt != errorRingSize+4 || got[len(got)-1].Attempt != 5 {
		t.Fatalf("ring: %d entries, first %d, last %d", len(got), got[0].Attempt, got[len(got)-1].Attempt)
	}
}
