package dedupe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fleetworks/fleet/internal/effects"
)

// Memory is the idempotency protocol in process memory, with an injected
// clock: for handler tests, fleet's own tests, and anything that needs no
// durability. It passes the same contract suite as [Redis]. The effects it
// applies keep Redis's meaning, which lives outside Redis in package
// internal/effects alone (the handler test kit uses it too), and
// TestEffectsMatchRedis holds it to a real redis-server. Tests read the
// effect keys with Int, Get, HGet, HGetAll, Type, TTL and EffectKeys.
//
// It is safe for concurrent use. Its batch calls never return an error of the
// store itself, except ClaimBatch on an empty key (wrapping ErrInvalid).
type Memory struct {
	cfg    Config
	now    func() time.Time
	owners *Owners

	mu      sync.Mutex
	records map[string]*memRecord
	effects *effects.Space
	// gates are the gates of ordered retries (order_memory.go).
	gates map[string]*memGate
}

type memRecord struct {
	state    byte // 'p' processing, 'd' done, 'r' released
	fence    int64
	owner    string
	deadline time.Time
	attempts int
	fp       string
	result   []byte
	expires  time.Time
	// lastOwner is the last owner that let the record go (released, or
	// taken over), until it is done.
	lastOwner string
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store with cfg (not validated: tests may use any
// timing). now is the clock; nil means time.Now.
func NewMemory(cfg Config, now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{
		cfg: cfg, now: now, owners: NewOwners(),
		records: map[string]*memRecord{},
		effects: effects.NewSpace(now),
	}
}

// record returns the live record at key, dropping an expired one.
func (m *Memory) record(key string, now time.Time) *memRecord {
	r := m.records[key]
	if r != nil && !now.Before(r.expires) {
		delete(m.records, key)
		return nil
	}
	return r
}

// ClaimBatch implements Store. It has no records of the previous layout:
// Claim.PreviousKey is not consulted.
func (m *Memory) ClaimBatch(_ context.Context, claims []Claim) ([]ClaimResult, error) {
	for i, c := range claims {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("claim batch: item %d: %w", i, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]ClaimResult, len(claims))
	for i, c := range claims {
		owner := c.Owner
		if owner == "" {
			owner = m.owners.Next()
		}
		out[i] = m.claim(c, owner, now)
	}
	return out, nil
}

// claim answers one claim, as claimScript does.
func (m *Memory) claim(c Claim, owner string, now time.Time) ClaimResult {
	r := m.record(c.Key, now)
	var res ClaimResult
	switch {
	case r == nil:
		if stop, ok := m.admit(c, &res); !ok {
			return stop
		}
		r = &memRecord{state: 'p', fence: 1, attempts: 1, fp: c.Fingerprint}
		m.records[c.Key] = r
	case r.fp != c.Fingerprint:
		return ClaimResult{Outcome: Conflict}
	case r.state == 'd':
		return ClaimResult{Outcome: Duplicate, Result: r.result, Head: m.endsHere(c)}
	case r.state == 'p' && r.owner == owner:
		// The same claim, sent again.
		g := m.gate(c.Gate)
		if c.Gate != "" && g != nil && g.info.Head != c.Identity() {
			// It acquired before the gate was made: give it back, and park.
			_ = m.releaseLocked(Lease{Key: c.Key, Owner: owner, Fence: r.fence}, true)
			return ClaimResult{Outcome: Parked}
		}
		return ClaimResult{Outcome: Acquired, Lease: Lease{Key: c.Key, Owner: owner, Fence: r.fence}, Attempts: r.attempts,
			Head: g != nil && c.Gate != ""}
	case r.lastOwner == owner:
		// A late copy of a claim whose owner has let go.
		return ClaimResult{Outcome: Busy}
	case r.state == 'p' && r.deadline.After(now):
		return ClaimResult{Outcome: Busy, RetryAfter: r.deadline.Sub(now)}
	default:
		if stop, ok := m.admit(c, &res); !ok {
			if stop.Outcome == Parked && r.state == 'p' {
				// Behind a gate, an expired lease is fenced off.
				r.fence++
				r.state, r.lastOwner, r.owner, r.deadline = 'r', r.owner, "", time.Time{}
			}
			return stop
		}
		res.TakenOver = r.state == 'p'
		if res.TakenOver {
			r.lastOwner = r.owner
		}
		r.fence++
		r.attempts++
		r.state = 'p'
	}
	r.owner, r.deadline, r.expires = owner, now.Add(m.cfg.Lease), now.Add(m.cfg.Retention)
	res.Outcome = Acquired
	res.Lease = Lease{Key: c.Key, Owner: owner, Fence: r.fence}
	res.Attempts = r.attempts
	return res
}

// owned returns the record if lease still owns it.
func (m *Memory) owned(l Lease, now time.Time) *memRecord {
	r := m.record(l.Key, now)
	if r == nil || r.state != 'p' || r.owner != l.Owner || r.fence != l.Fence {
		return nil
	}
	return r
}

// ExtendBatch implements Store.
func (m *Memory) ExtendBatch(_ context.Context, leases []Lease) ([]error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]error, len(leases))
	for i, l := range leases {
		r := m.owned(l, now)
		if r == nil {
			out[i] = ErrLeaseLost
			continue
		}
		r.deadline, r.expires = now.Add(m.cfg.Lease), now.Add(m.cfg.Retention)
	}
	return out, nil
}

// CompleteBatch implements Store.
func (m *Memory) CompleteBatch(_ context.Context, completions []Completion) ([]error, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]error, len(completions))
	for i, c := range completions {
		if err := checkBound(&c); err != nil {
			out[i] = err // as Redis: checked before anything else
			continue
		}
		if r := m.record(c.Lease.Key, now); r != nil && r.state == 'd' && r.fence == c.Lease.Fence {
			continue // our own completion, repeated
		}
		r := m.owned(c.Lease, now)
		if r == nil {
			out[i] = ErrLeaseLost
			continue
		}
		// checkBound refused every fleet: key, the records among them:
		// the effects and the records cannot meet.
		if err := m.effects.Apply(c.Effects); err != nil {
			out[i] = fmt.Errorf("%w: %w", ErrInvalid, err)
			continue
		}
		r.state, r.owner, r.lastOwner, r.deadline, r.expires = 'd', "", "", time.Time{}, now.Add(m.cfg.Retention)
		if len(c.Result) > 0 {
			r.result = append([]byte(nil), c.Result...)
		}
	}
	return out, nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, l Lease) error {
	return m.release(l, false)
}

// Unclaim implements Store.
func (m *Memory) Unclaim(_ context.Context, l Lease) error {
	return m.release(l, true)
}

func (m *Memory) release(l Lease, unrun bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.releaseLocked(l, unrun)
}

// releaseLocked is release with m.mu held.
func (m *Memory) releaseLocked(l Lease, unrun bool) error {
	now := m.now()
	if r := m.record(l.Key, now); r != nil && r.state == 'r' && r.fence == l.Fence {
		return nil
	}
	r := m.owned(l, now)
	if r == nil {
		return ErrLeaseLost
	}
	r.state, r.lastOwner, r.owner, r.deadline, r.expires = 'r', r.owner, "", time.Time{}, now.Add(m.cfg.Retention)
	if unrun && r.attempts > 0 {
		r.attempts--
	}
	return nil
}
