package effects

import (
	"maps"
	"slices"
	"time"
)

// Type is the type of a key, as Redis's TYPE names it.
type Type string

// The types effects create, and the type of a missing key.
const (
	None   Type = "none"
	String Type = "string"
	Hash   Type = "hash"
)

// Space is an in-memory Redis key space of the keys that effects write:
// strings and hashes with times to live. Its clock is injected, and read
// in whole milliseconds as Redis reads its own.
//
// A Space is not safe for concurrent use.
type Space struct {
	now  func() time.Time
	keys map[string]*value
}

// value is one key.
type value struct {
	typ  Type // String or Hash
	str  string
	hash map[string]string
	// expires is when the key expires, in Unix milliseconds; 0 is never.
	expires int64
}

// clone returns a copy of v that shares nothing with it; nil for nil.
func (v *value) clone() *value {
	if v == nil {
		return nil
	}
	c := *v
	c.hash = maps.Clone(v.hash)
	return &c
}

// field returns a field of a hash value; false for a missing value or
// field.
func (v *value) field(name string) (string, bool) {
	if v == nil {
		return "", false
	}
	f, ok := v.hash[name]
	return f, ok
}

// NewSpace returns an empty key space on the clock now; nil means
// time.Now.
func NewSpace(now func() time.Time) *Space {
	if now == nil {
		now = time.Now
	}
	return &Space{now: now, keys: map[string]*value{}}
}

// nowMS reads the clock in whole milliseconds.
func (s *Space) nowMS() int64 { return s.now().UnixMilli() }

// lookup returns the key at the instant now (Unix ms), or nil when it does
// not exist. A key lives until now has passed its deadline, as in Redis,
// and is dropped after.
func (s *Space) lookup(key string, now int64) *value {
	v := s.keys[key]
	if v != nil && v.expires != 0 && now > v.expires {
		delete(s.keys, key)
		return nil
	}
	return v
}

// Type returns the type of key.
func (s *Space) Type(key string) Type {
	if v := s.lookup(key, s.nowMS()); v != nil {
		return v.typ
	}
	return None
}

// Get returns the string at key; false when there is no string there.
func (s *Space) Get(key string) (string, bool) {
	v := s.lookup(key, s.nowMS())
	if v == nil || v.typ != String {
		return "", false
	}
	return v.str, true
}

// HGet returns a field of the hash at key; false when there is none.
func (s *Space) HGet(key, field string) (string, bool) {
	v := s.lookup(key, s.nowMS())
	if v == nil || v.typ != Hash {
		return "", false
	}
	f, ok := v.hash[field]
	return f, ok
}

// HGetAll returns a copy of the fields of the hash at key: empty, not nil,
// when there is no hash there.
func (s *Space) HGetAll(key string) map[string]string {
	v := s.lookup(key, s.nowMS())
	if v == nil || v.typ != Hash {
		return map[string]string{}
	}
	return maps.Clone(v.hash)
}

// TTL returns the time to live left to key, in whole milliseconds; false
// when the key does not exist or has none.
func (s *Space) TTL(key string) (time.Duration, bool) {
	now := s.nowMS()
	v := s.lookup(key, now)
	if v == nil || v.expires == 0 {
		return 0, false
	}
	return time.Duration(v.expires-now) * time.Millisecond, true
}

// Keys returns the keys that exist, sorted.
func (s *Space) Keys() []string {
	now := s.nowMS()
	keys := make([]string, 0, len(s.keys))
	for k := range s.keys {
		if s.lookup(k, now) != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
