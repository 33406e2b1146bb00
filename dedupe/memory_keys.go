package dedupe

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/fleetworks/fleet/handlers"
)

// The effect keys of Memory, read as Redis commands read them, so that a
// test can compare the whole key space with a Redis that ran the same
// effects. Idempotency records are kept apart and are not among them.

var _ handlers.View = (*Memory)(nil)

// EffectKeys returns the keys that effects hold now, sorted.
func (m *Memory) EffectKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var keys []string
	for _, k := range slices.Concat(slices.Collect(maps.Keys(m.strs)), slices.Collect(maps.Keys(m.hashes))) {
		if t, ok := m.expires[k]; !ok || now.Before(t) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Type returns the type of key as Redis's TYPE names it: "string",
// "hash", or "none" when it does not exist.
func (m *Memory) Type(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(key, m.now())
	if _, ok := m.strs[key]; ok {
		return "string"
	}
	if _, ok := m.hashes[key]; ok {
		return "hash"
	}
	return "none"
}

// TTL returns the time to live left to key; false when the key does not
// exist or has none.
func (m *Memory) TTL(key string) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.expire(key, now)
	t, ok := m.expires[key]
	if !ok {
		return 0, false
	}
	return t.Sub(now), true
}

// HGetAll implements handlers.View: the fields of the hash at key, empty
// when there is none. It never fails.
func (m *Memory) HGetAll(_ context.Context, key string) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(key, m.now())
	out := maps.Clone(m.hashes[key])
	if out == nil {
		out = map[string]string{}
	}
	return out, nil
}
