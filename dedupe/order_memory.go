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
	gate := ref.Gate()
	g := m.gate(gate)
	switch {
	case g == nil:
		g = &memGate{info: GateInfo{Ref: ref, Since: m.now()}, queued: map[string]string{}}
		m.gates[gate] = g
	case g.info.Head != head:
		return ErrNotHead
	}
	g.info.Head, g.info.State, g.info.ReleasedBy, g.info.Released, g.unblocked = head, GateParked, "", nil, ""
	if held {
		g.info.State = GateHeld
	}
	return nil
}

// Park implements Gates.
func (m *Memory) Park(_ context.Context, gate, record string, f Follower, limits GateLimits) (ParkAnswer, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.record(record, m.now()); r != nil && r.state == 'd' {
		if r.fp != f.Fingerprint {
			return ParkConflict, nil
		}
		return ParkDuplicate, nil
	}
	g := m.gate(gate)
	switch {
	case g == nil:
		return ParkFree, nil
	case g.info.Head == f.Identity:
		return ParkHead, nil
	}
	if fp, ok := g.queued[f.Identity]; ok {
		if fp != f.Fingerprint {
			return ParkConflict, nil
		}
		return Parked, nil
	}
	if limits.MaxFollowers > 0 && len(g.queue) >= limits.MaxFollowers {
		return ParkOverflow, nil
	}
	f.Item = slices.Clone(f.Item)
	g.queue = append(g.queue, f)
	g.queued[f.Identity] = f.Fingerprint
	g.info.Queued++
	g.info.Bytes += int64(len(f.encode()))
	return Parked, nil
}

// End implements Gates.
func (m *Memory) End(_ context.Context, gate, head string) (*Follower, error) {
	if !isIdentity(head) {
		return nil, fmt.Errorf("%w: head %q is not an identity", ErrInvalid, head)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.end(gate, head), nil
}

// end is gateEnd of the Redis scripts.
func (m *Memory) end(gate, head string) *Follower {
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
	g.info.Head, g.info.State, g.info.ReleasedBy, g.info.Released = next.Identity, GateReleased, head, &next
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
		f := m.end(gate, held)
		if f != nil {
			g.unblocked = held
		}
		return f, nil
	case g.info.State == GateReleased && g.info.ReleasedBy != "" && g.unblocked == g.info.ReleasedBy:
		return copyFollower(g.info.Released), nil
	}
	return nil, ErrNotHeld
}

// Gate implements Gates.
func (m *Memory) Gate(_ context.Context, gate string) (*GateInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.gate(gate)
	if g == nil {
		return nil, nil
	}
	info := g.info
	if info.State != GateReleased {
		info.Released = nil
	}
	info.Released = copyFollower(info.Released)
	return &info, nil
}

func copyFollower(f *Follower) *Follower {
	if f == nil {
		return nil
	}
	c := *f
	c.Item = slices.Clone(f.Item)
	return &c
}
