package dedupe

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/fleetworks/fleet/handlers"
)

// Memory is the idempotency protocol in process memory, with an injected
// clock: for handler tests, fleet's own tests, and anything that needs no
// durability. It passes the same contract suite as [Redis] and follows
// Redis's rules for effects (integer syntax and range, types, SET clearing a
// time to live, PEXPIRE of zero or less deleting the key). It keeps the
// effects it applies in a small key space that tests read with Int, Get and
// HGet.
//
// It is safe for concurrent use. Its batch calls never return an error of the
// store itself, except ClaimBatch on an empty key (wrapping ErrInvalid).
type Memory struct {
	cfg    Config
	now    func() time.Time
	owners *Owners

	mu      sync.Mutex
	records map[string]*memRecord
	strs    map[string]string
	hashes  map[string]map[string]string
	expires map[string]time.Time
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
		strs:    map[string]string{},
		hashes:  map[string]map[string]string{},
		expires: map[string]time.Time{},
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
		if c.Key == "" {
			return nil, fmt.Errorf("claim batch: item %d: %w: empty key", i, ErrInvalid)
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
		r = &memRecord{state: 'p', fence: 1, attempts: 1, fp: c.Fingerprint}
		m.records[c.Key] = r
	case r.fp != c.Fingerprint:
		return ClaimResult{Outcome: Conflict}
	case r.state == 'd':
		return ClaimResult{Outcome: Duplicate, Result: r.result}
	case r.state == 'p' && r.owner == owner:
		// The same claim, sent again.
		return ClaimResult{Outcome: Acquired, Lease: Lease{Key: c.Key, Owner: owner, Fence: r.fence}, Attempts: r.attempts}
	case r.lastOwner == owner:
		// A late copy of a claim whose owner has let go.
		return ClaimResult{Outcome: Busy}
	case r.state == 'p' && r.deadline.After(now):
		return ClaimResult{Outcome: Busy, RetryAfter: r.deadline.Sub(now)}
	default:
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
		scratch, err := m.simulate(c.Lease.Key, c.Effects, now)
		if err != nil {
			out[i] = err
			continue
		}
		m.commit(scratch)
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

// memKey is the state of one effect key while a completion is simulated.
type memKey struct {
	kind byte // 0 absent, 's' string, 'h' hash
	str  string
	hash map[string]string
	exp  time.Time // zero: no time to live
}

// simulate applies ops to copies of the keys they touch and returns the
// copies, or an error wrapping ErrInvalid when Redis would refuse an op. The
// store itself is not changed.
func (m *Memory) simulate(record string, ops []handlers.Op, now time.Time) (map[string]*memKey, error) {
	scratch := make(map[string]*memKey, len(ops))
	get := func(k string) *memKey {
		if v, ok := scratch[k]; ok {
			return v
		}
		m.expire(k, now)
		v := &memKey{exp: m.expires[k]}
		if s, ok := m.strs[k]; ok {
			v.kind, v.str = 's', s
		} else if h, ok := m.hashes[k]; ok {
			v.kind, v.hash = 'h', maps.Clone(h)
		}
		scratch[k] = v
		return v
	}
	for i, op := range ops {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: effect %d: %s", ErrInvalid, i, fmt.Sprintf(format, a...))
		}
		if op.Key == record {
			return nil, bad("%s on the idempotency record", op.Kind)
		}
		switch op.Kind {
		case handlers.OpSet:
			scratch[op.Key] = &memKey{kind: 's', str: op.Value}
		case handlers.OpDel:
			scratch[op.Key] = &memKey{}
		case handlers.OpExpire:
			k := get(op.Key)
			switch ms := op.TTL.Milliseconds(); {
			case ms <= 0:
				scratch[op.Key] = &memKey{}
			case k.kind != 0:
				k.exp = now.Add(time.Duration(ms) * time.Millisecond)
			}
		case handlers.OpIncrBy:
			k := get(op.Key)
			var cur int64
			switch k.kind {
			case 'h':
				return nil, bad("INCRBY %s: key holds a hash", op.Key)
			case 's':
				n, ok := redisInt(k.str)
				if !ok {
					return nil, bad("INCRBY %s: value is not an integer", op.Key)
				}
				cur = n
			}
			sum, ok := addInt(cur, op.Delta)
			if !ok {
				return nil, bad("INCRBY %s: overflow", op.Key)
			}
			k.kind, k.str = 's', strconv.FormatInt(sum, 10)
		case handlers.OpHSet, handlers.OpHIncrBy, handlers.OpHDel:
			k := get(op.Key)
			if k.kind == 's' {
				return nil, bad("%s %s: key holds a string", op.Kind, op.Key)
			}
			if op.Kind == handlers.OpHDel {
				if k.kind == 'h' {
					delete(k.hash, op.Field)
					if len(k.hash) == 0 {
						scratch[op.Key] = &memKey{}
					}
				}
				continue
			}
			if k.kind == 0 {
				k.kind, k.hash = 'h', map[string]string{}
			}
			v := op.Value
			if op.Kind == handlers.OpHIncrBy {
				var cur int64
				if old, ok := k.hash[op.Field]; ok {
					if cur, ok = redisInt(old); !ok {
						return nil, bad("HINCRBY %s %s: value is not an integer", op.Key, op.Field)
					}
				}
				sum, ok := addInt(cur, op.Delta)
				if !ok {
					return nil, bad("HINCRBY %s %s: overflow", op.Key, op.Field)
				}
				v = strconv.FormatInt(sum, 10)
			}
			k.hash[op.Field] = v
		default:
			return nil, bad("unknown operation %v", op.Kind)
		}
	}
	return scratch, nil
}

// commit writes simulated keys into the store.
func (m *Memory) commit(scratch map[string]*memKey) {
	for key, k := range scratch {
		delete(m.strs, key)
		delete(m.hashes, key)
		delete(m.expires, key)
		switch k.kind {
		case 's':
			m.strs[key] = k.str
		case 'h':
			m.hashes[key] = k.hash
		default:
			continue
		}
		if !k.exp.IsZero() {
			m.expires[key] = k.exp
		}
	}
}

// redisInt parses s as Redis parses a 64-bit integer: no '+', no leading
// zeros, no "-0", no spaces.
func redisInt(s string) (int64, bool) {
	if s == "0" {
		return 0, true
	}
	d := s
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || d[0] < '1' || d[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// addInt returns a+b, or false on overflow.
func addInt(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// expire drops key if its time to live has passed.
func (m *Memory) expire(key string, now time.Time) {
	if t, ok := m.expires[key]; ok && !now.Before(t) {
		delete(m.strs, key)
		delete(m.hashes, key)
		delete(m.expires, key)
	}
}

// Int returns the integer at key: 0 when the key is absent, holds a hash, or
// holds no integer.
func (m *Memory) Int(key string) int64 {
	v, _ := m.Get(key)
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// Get returns the string at key, and whether there is one.
func (m *Memory) Get(key string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(key, m.now())
	v, ok := m.strs[key]
	return v, ok
}

// HGet returns a field of the hash at key, and whether there is one.
func (m *Memory) HGet(key, field string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(key, m.now())
	v, ok := m.hashes[key][field]
	return v, ok
}
