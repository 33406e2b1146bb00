package dedupe

import (
	"context"
	"strconv"
	"time"

	"github.com/fleetworks/fleet/handlers"
)

// The effect keys of Memory, read as Redis commands read them, so that a
// test can compare the whole key space with a Redis that ran the same
// effects. Idempotency records are kept apart and are not among them.

var _ handlers.View = (*Memory)(nil)

// Int returns the integer at key: 0 when the key is absent, holds a hash, or
// holds no integer.
func (m *Memory) Int(key string) int64 {
	v, _ := m.Lookup(key)
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// Lookup returns the string at key, and whether there is one.
func (m *Memory) Lookup(key string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.effects.Get(key)
}

// Get implements handlers.View: the string at key, "" when there is none.
// It never fails.
func (m *Memory) Get(_ context.Context, key string) (string, error) {
	v, _ := m.Lookup(key)
	return v, nil
}

// HGet returns a field of the hash at key, and whether there is one.
func (m *Memory) HGet(key, field string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.effects.HGet(key, field)
}

// HGetAll implements handlers.View: the fields of the hash at key, empty
// when there is none. It never fails.
func (m *Memory) HGetAll(_ context.Context, key string) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.effects.HGetAll(key), nil
}

// EffectKeys returns the keys that effects hold now, sorted.
func (m *Memory) EffectKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.effects.Keys()
}

// Type returns the type of key as Redis's TYPE names it: "string",
// "hash", or "none" when it does not exist.
func (m *Memory) Type(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.effects.Type(key))
}

// TTL returns the time to live left to key, in whole milliseconds; false
// when the key does not exist or has none.
func (m *Memory) TTL(key string) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.effects.TTL(key)
}
