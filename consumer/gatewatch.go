package consumer

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/prometheus/client_golang/prometheus"
)

// GateStatus is what a worker last read of its group's gates (the keys
// whose events are parked behind one that waits in a retry tier or is
// held), for /status, `fleet status` and the fleet_order_* gauges.
type GateStatus struct {
	// Gated counts the group's gated keys among the oldest read (at most
	// gateScanLimit), Held those held after a dead letter.
	Gated int `json:"gated_keys"`
	Held  int `json:"held_keys"`
	// OldestGateSeconds and OldestHeldSeconds are the ages of the oldest
	// gate and the oldest held key (0: none).
	OldestGateSeconds float64 `json:"oldest_gate_seconds"`
	OldestHeldSeconds float64 `json:"oldest_held_seconds"`
	// Keys are the oldest gates, held first, at most gateStatusKeys.
	Keys []GatedKey `json:"keys,omitempty"`
	// ReadAt is when the gates were read.
	ReadAt time.Time `json:"read_at"`
}

// GatedKey is one gated key.
type GatedKey struct {
	Key        string  `json:"key"`
	Topic      string  `json:"topic"`
	Partition  int     `json:"partition"`
	State      string  `json:"state"`
	Head       string  `json:"head"`
	Parked     int     `json:"parked"`
	AgeSeconds float64 `json:"age_seconds"`
}

// gateScanLimit bounds the gates read at each interval; gateStatusKeys the
// gates listed on /status.
const (
	gateScanLimit  = 1000
	gateStatusKeys = 10
)

// gateGauges are the fleet_order_* gauges of the gates.
type gateGauges struct {
	gated, held, oldestGate, oldestHeld prometheus.Gauge
}

func newGateGauges(r *registering) gateGauges {
	return gateGauges{
		gated: gauge(r, "fleet_order_gated_keys",
			"Keys of this consumer group whose events are parked behind one that waits in a retry tier or is held (among the 1000 oldest gates)."),
		held: gauge(r, "fleet_order_held_keys",
			"Keys of this consumer group held after a dead letter under --on-dead-letter hold, waiting for fleet keys unblock."),
		oldestGate: gauge(r, "fleet_order_oldest_gate_seconds",
			"Age of this consumer group's oldest gated key (0: none)."),
		oldestHeld: gauge(r, "fleet_order_oldest_held_key_seconds",
			"Age of this consumer group's oldest held key (0: none)."),
	}
}

// watchGates reads the group's gates every GateScanInterval until ctx ends.
func (e *Engine) watchGates(ctx context.Context) {
	t := time.NewTicker(e.cfg.GateScanInterval)
	defer t.Stop()
	for {
		if list, err := e.store.ListGates(ctx, gateScanLimit); err == nil {
			s := summarizeGates(e.cfg.Group, list.Gates, time.Now())
			e.gateStatus.Store(&s)
			e.m.gates.set(s)
		} else if ctx.Err() == nil {
			e.log.Warn("read the gates of ordered retries", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g gateGauges) set(s GateStatus) {
	g.gated.Set(float64(s.Gated))
	g.held.Set(float64(s.Held))
	g.oldestGate.Set(s.OldestGateSeconds)
	g.oldestHeld.Set(s.OldestHeldSeconds)
}

// summarizeGates is what /status and the gauges show of the gates of group.
func summarizeGates(group string, gates []dedupe.GateInfo, now time.Time) GateStatus {
	s := GateStatus{ReadAt: now.UTC(), Keys: []GatedKey{}}
	for _, g := range HeldFirst(gates) {
		if g.Ref.Group != group {
			continue
		}
		age := max(now.Sub(g.Since).Seconds(), 0)
		s.Gated++
		s.OldestGateSeconds = max(s.OldestGateSeconds, age)
		if g.State == dedupe.GateHeld {
			s.Held++
			s.OldestHeldSeconds = max(s.OldestHeldSeconds, age)
		}
		s.Keys = append(s.Keys, GatedKey{Key: g.Ref.Key, Topic: g.Ref.Topic, Partition: g.Ref.Partition,
			State: g.State.String(), Head: g.Head, Parked: g.Queued, AgeSeconds: age})
	}
	s.Keys = s.Keys[:min(len(s.Keys), gateStatusKeys)]
	return s
}

// HeldFirst returns the gates in the order operators read them: held keys
// first, then the oldest first.
func HeldFirst(gates []dedupe.GateInfo) []dedupe.GateInfo {
	out := slices.Clone(gates)
	slices.SortStableFunc(out, func(a, b dedupe.GateInfo) int {
		held := func(g dedupe.GateInfo) int {
			if g.State == dedupe.GateHeld {
				return 0
			}
			return 1
		}
		return cmp.Or(cmp.Compare(held(a), held(b)), a.Since.Compare(b.Since))
	})
	return out
}
