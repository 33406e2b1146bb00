package dedupe

import (
	"context"
	"fmt"
	"slices"
)

// memGate is a gate in Memory, as the Redis scripts keep it.
type memGate struct {
	info   GateInfo
	queue  []Follower
	queued map[string]string // identity -> fingerprint
	// unblocked is the held head an unblock released.
	unblocked string
}

var _ Gates = (*Memory)(nil)

// gate returns the gate at key, or nil.
func (m *Memory) gate(key string) *memGate {
	if m.gates == nil {
		m.gates = map[string]*memGate{}
	}
	return m.gates[key]
}

// Hold implements Gates.
func (m *Memory) Hold(_ context.Context, ref GateRef, head string, held bool) error {
	if err := checkHold(ref, head); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.hold(ref, head, held) {
		return ErrNotHead
	}
	return nil
}

// hold is gateHold of the Redis scripts.
func (m *Memory) hold(ref GateRef, head string, held bool) bool {
	gate := ref.Gate()
	g := m.gate(gate)
	switch {
	case g == nil:
		g = &memGate{info: GateInfo{Ref: ref, Since: m.now()}, queued: map[string]string{}}
		m.gates[gate] = g
	case g.info.Head != head:
		return false
	}
	g.info.Head, g.info.State, g.info.ReleasedBy, g.info.Released, g.unblocked = head, GateParked, "", nil, ""
	if held {
		g.info.State = GateHeld
	}
	return true
}

// ReleaseGate implements Gates.
func (m *Memory) ReleaseGate(_ context.Context, l Lease, ref GateRef, step GateStep) (*Follower, error) {
	gate := ref.Gate()
	if err := checkGate(l.Key, gate); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.releaseLocked(l, false); err != nil {
		return nil, err
	}
	switch step {
	case GateEndHead:
		return m.end(gate, l.identity(), l.identity()), nil
	case GateHoldParked, GateHoldHeld:
		if !m.hold(ref, l.identity(), step == GateHoldHeld) {
			return nil, ErrNotHead
		}
	}
	return nil, nil
}

// admit decides a claim that would acquire by its gate, as the claim
// script's admit does: false with the answer when the gate parks it or its
// payload is not the one released; else it notes in res whether the gate
// names it, and marks a released head running.
func (m *Memory) admit(c Claim, res *ClaimResult) (ClaimResult, bool) {
	if c.Gate == "" {
		return ClaimResult{}, true
	}
	g := m.gate(c.Gate)
	switch {
	case g == nil:
		return ClaimResult{}, true
	case g.info.Head != c.Identity() && g.info.ReleasedBy == c.Identity() && g.info.State == GateReleased:
		return ClaimResult{Outcome: Duplicate, Head: true}, false // its end is redone
	case g.info.Head != c.Identity():
		return ClaimResult{Outcome: Parked}, false
	case g.info.State == GateReleased:
		if g.info.Released.Fingerprint != c.Fingerprint {
			return ClaimResult{Outcome: Conflict}, false
		}
		g.info.State, g.info.Released = GateRunning, nil
	}
	res.Head = true
	return ClaimResult{}, true
}

// endsHere reports whether a duplicate claim's event is its gate's head,
// or the head whose end released the current one: its end is to be run
// (again).
func (m *Memory) endsHere(c Claim) bool {
	g := m.gate(c.Gate)
	if c.Gate == "" || g == nil {
		return false
	}
	id := c.Identity()
	return g.info.Head == id || g.info.ReleasedBy == id && g.info.State == GateReleased
}

// Park implements Gates.
func (m *Memory) Park(_ context.Context, gate, record string, f Follower, limits GateLimits) (ParkAnswer, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.record(record, m.now()); r != nil && r.fp != f.Fingerprint {
		return ParkConflict, nil // the first payload stands, whatever the state
	} else if r != nil && r.state == 'd' {
		return ParkDuplicate, nil
	}
	g := m.gate(gate)
	switch {
	case g == nil:
		return ParkFree, nil
	case g.info.Head == f.Identity && g.info.State == GateReleased && g.info.Released.Fingerprint != f.Fingerprint:
		return ParkConflict, nil
	case g.info.Head == f.Identity && g.info.State == GateReleased:
		return ParkQueuedBefore, nil
	case g.info.Head == f.Identity:
		return ParkHead, nil
	}
	if fp, ok := g.queued[f.Identity]; ok {
		if fp != f.Fingerprint {
			return ParkConflict, nil
		}
		return ParkQueuedBefore, nil
	}
	if limits.MaxFollowers > 0 && len(g.queue) >= limits.MaxFollowers {
		return ParkOverflow, nil
	}
	f.Item = slices.Clone(f.Item)
	g.queue = append(g.queue, f)
	g.queued[f.Identity] = f.Fingerprint
	g.info.Queued++
	g.info.Bytes += int64(len(f.encode()))
	return ParkQueued, nil
}

// End implements Gates.
func (m *Memory) End(_ context.Context, gate, head string) (*Follower, error) {
	if !isIdentity(head) {
		return nil, fmt.Errorf("%w: head %q is not an identity", ErrInvalid, head)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.end(gate, head, head), nil
}

// Skip implements Gates.
func (m *Memory) Skip(_ context.Context, gate, head, by string) (*Follower, error) {
	if !isIdentity(head) || !isIdentity(by) {
		return nil, fmt.Errorf("%w: head %q or %q is not an identity", ErrInvalid, head, by)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.end(gate, head, by), nil
}

// end is gateEnd of the Redis scripts: by is remembered as the head whose
// end released the next.
func (m *Memory) end(gate, head, by string) *Follower {
	g := m.gate(gate)
	switch {
	case g == nil:
		return nil
	case g.info.Head != head:
		if g.info.ReleasedBy == head && g.info.State == GateReleased {
			return copyFollower(g.info.Released)
		}
		return nil
	case len(g.queue) == 0:
		delete(m.gates, gate)
		return nil
	}
	next := g.queue[0]
	g.queue = g.queue[1:]
	delete(g.queued, next.Identity)
	g.info.Queued--
	g.info.Bytes -= int64(len(next.encode()))
	g.unblocked = ""
	g.info.Head, g.info.State, g.info.ReleasedBy, g.info.Released = next.Identity, GateReleased, by, &next
	return copyFollower(&next)
}

// Unblock implements Gates.
func (m *Memory) Unblock(_ context.Context, gate string) (*Follower, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.gate(gate)
	switch {
	case g == nil:
		return nil, ErrNotHeld
	case g.info.State == GateHeld:
		held := g.info.Head
		f := m.end(gate, held, held)
		if f != nil {
			g.unblocked = held
		}
		return f, nil
	case g.info.State == GateReleased && g.info.ReleasedBy != "" && g.unblocked == g.info.ReleasedBy:
		return copyFollower(g.info.Released), nil
	}
	return nil, ErrNotHeld
}

// ListGates implements Gates.
func (m *Memory) ListGates(_ context.Context, limit int) (GateList, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := GateList{Total: len(m.gates)}
	for key := range m.gates {
		list.Gates = append(list.Gates, m.info(key))
	}
	slices.SortFunc(list.Gates, func(a, b GateInfo) int { return a.Since.Compare(b.Since) })
	list.Gates = list.Gates[:min(len(list.Gates), max(limit, 1))]
	return list, nil
}

// Gate implements Gates.
func (m *Memory) Gate(_ context.Context, gate string) (*GateInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gate(gate) == nil {
		return nil, nil
	}
	info := m.info(gate)
	return &info, nil
}

// info is the gate at key as Gate returns it.
func (m *Memory) info(key string) GateInfo {
	info := m.gates[key].info
	info.Key = key
	if info.State != GateReleased {
		info.Released = nil
	}
	info.Released = copyFollower(info.Released)
	return info
}

func copyFollower(f *Follower) *Follower {
	if f == nil {
		return nil
	}
	c := *f
	c.Item = slices.Clone(f.Item)
	return &c
}
