package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound means there is no idempotency record at a key: the event was
// never claimed in the dedupe window, or its record expired or was
// forgotten.
var ErrNotFound = errors.New("no idempotency record")

// Record states, as [Record.State] reports them.
const (
	StateProcessing = "processing"
	StateDone       = "done"
	StateReleased   = "released"
)

// Record is an idempotency record as stored, for operators.
type Record struct {
	Key   string `json:"key"`
	State string `json:"state"`
	Fence int64  `json:"fence"`
	// Owner and LeaseDeadline are set while the record is processing; a
	// deadline in the past is an expired lease the next claim takes over.
	Owner         string    `json:"owner,omitempty"`
	LeaseDeadline time.Time `json:"lease_deadline,omitzero"`
	Attempts      int       `json:"attempts"`
	Fingerprint   string    `json:"fingerprint,omitempty"`
	Result        []byte    `json:"result,omitempty"`
	// TTL is what is left of the dedupe window.
	TTL time.Duration `json:"ttl"`
}

// Admin inspects and changes single records: the operator's tools (fleet
// keys, fleet dlq replay). Both stores implement it.
type Admin interface {
	// Inspect returns the record at key, or ErrNotFound.
	Inspect(ctx context.Context, key string) (Record, error)
	// Forget deletes the record at key, so that the event runs again the
	// next time it arrives, even if it was done. It reports whether there
	// was a record.
	Forget(ctx context.Context, key string) (bool, error)
	// ResetAttempts gives a record that is not done a fresh attempt budget,
	// keeping its fence; it reports whether it did (false for a done or a
	// missing record).
	ResetAttempts(ctx context.Context, key string) (bool, error)
}

var (
	_ Admin = (*Redis)(nil)
	_ Admin = (*Memory)(nil)
)

func stateName(s string) string {
	switch s {
	case "p":
		return StateProcessing
	case "d":
		return StateDone
	case "r":
		return StateReleased
	}
	return s
}

// inspectScript: KEYS[1] record; ARGV lookback and slice ms (adminSlice). Reply {} no
// record, {'h', ttl ms, fields} a record of its own, {'p', ttl ms, {fence,
// attempts, fingerprint, result}} a packed one.
var inspectScript = redis.NewScript(luaClock + luaPacked + `
local all = redis.call('HGETALL', KEYS[1])
if #all > 0 then return {'h', redis.call('PTTL', KEYS[1]), all} end
local base, id = packedBase(KEYS[1], tonumber(ARGV[2]))
if not base then return {} end
local v, bucket, err = packedFind(base, id, clock(), tonumber(ARGV[1]), tonumber(ARGV[2]))
if err then return redis.error_reply(err) end
if not v then return {} end
local f, a, fp, result = packedFields(v)
return {'p', redis.call('PTTL', bucket), {f or '', a or '', fp or '', result or ''}}
`)

// Inspect implements Admin.
func (s *Redis) Inspect(ctx context.Context, key string) (Record, error) {
	lookback, slice, err := s.adminSlice(ctx, key)
	if err != nil {
		return Record{}, err
	}
	v, err := inspectScript.Run(ctx, s.c, []string{key}, lookback, slice).Slice()
	if err != nil {
		return Record{}, fmt.Errorf("inspect %s: %w", key, err)
	}
	if len(v) != 3 {
		return Record{}, ErrNotFound
	}
	kind, _ := v[0].(string)
	ttl, _ := v[1].(int64)
	flat, _ := v[2].([]any)
	if kind == "p" {
		return packedRecord(key, flat, time.Duration(ttl)*time.Millisecond)
	}
	f := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		f[fmt.Sprint(flat[i])] = fmt.Sprint(flat[i+1])
	}
	return hashRecord(key, f, time.Duration(ttl)*time.Millisecond)
}

// adminLookback is how far back an operator's tool looks for a packed
// record: further than any retention a worker is likely to run with, since
// the tool does not know theirs (it reads at most 4,096 slices).
const adminLookback = 90 * 24 * time.Hour

// adminSlice returns the lookback and slice for an operator's call on key:
// the slice this store packs with, or else as the workers set it, never
// setting it (0 when there is none, or on a Redis Cluster: then no record
// is packed). A bucket, or any
// key that is not a record's, is refused: forgetting a bucket would forget
// every record in it.
func (s *Redis) adminSlice(ctx context.Context, key string) (lookback int64, slice int64, err error) {
	if isBucketKey(key) || !strings.HasPrefix(key, recordPrefix) {
		return 0, 0, fmt.Errorf("%w: %q is not the key of an idempotency record", ErrInvalid, key)
	}
	lookback = max(adminLookback, s.cfg.Retention).Milliseconds()
	if _, cluster := s.c.(*redis.ClusterClient); cluster {
		return lookback, 0, nil
	}
	if ms := s.sliceMS.Load(); ms > 0 {
		return lookback, ms, nil // this store's, as it packs
	}
	v, err := s.c.Get(ctx, SliceKey).Result()
	if errors.Is(err, redis.Nil) {
		return lookback, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", SliceKey, err)
	}
	slice, err = parseSlice(v)
	return lookback, slice, err
}

// hashRecord reads a record of its own, from its fields.
func hashRecord(key string, f map[string]string, ttl time.Duration) (Record, error) {
	if f["s"] == "" {
		return Record{}, fmt.Errorf("%s holds a hash that is not an idempotency record", key)
	}
	r := Record{Key: key, State: stateName(f["s"]), Owner: f["o"], Fingerprint: f["p"], TTL: ttl}
	r.Fence, _ = strconv.ParseInt(f["f"], 10, 64)
	r.Attempts, _ = strconv.Atoi(f["a"])
	if ms, err := strconv.ParseInt(f["l"], 10, 64); err == nil && r.State == StateProcessing {
		r.LeaseDeadline = time.UnixMilli(ms)
	}
	if v, ok := f["r"]; ok {
		r.Result = []byte(v)
	}
	return r, nil
}

// packedRecord reads a packed done record from its fence, attempts,
// fingerprint and result.
func packedRecord(key string, fields []any, ttl time.Duration) (Record, error) {
	var parts [4]string
	for i := range min(len(fields), len(parts)) {
		parts[i] = fmt.Sprint(fields[i])
	}
	r := Record{Key: key, State: StateDone, Fingerprint: parts[2], TTL: ttl}
	var err1, err2 error
	r.Fence, err1 = strconv.ParseInt(parts[0], 10, 64)
	r.Attempts, err2 = strconv.Atoi(parts[1])
	if len(fields) != 4 || err1 != nil || err2 != nil {
		return Record{}, fmt.Errorf("%s: a packed record that is not fleet's: %q", key, fields)
	}
	if parts[3] != "" {
		r.Result = []byte(parts[3])
	}
	return r, nil
}

// forgetScript: KEYS[1] record; ARGV lookback and slice ms (adminSlice). Deletes the
// record, of its own or packed. Reply 1 when there was one.
var forgetScript = redis.NewScript(luaClock + luaPacked + `
local n = redis.call('DEL', KEYS[1])
local base, id = packedBase(KEYS[1], tonumber(ARGV[2]))
if base then
  local v, bucket, err = packedFind(base, id, clock(), tonumber(ARGV[1]), tonumber(ARGV[2]))
  if err then return redis.error_reply(err) end
  if v then
    redis.call('HDEL', bucket, id)
    n = 1
  end
end
return n
`)

// Forget implements Admin.
func (s *Redis) Forget(ctx context.Context, key string) (bool, error) {
	lookback, slice, err := s.adminSlice(ctx, key)
	if err != nil {
		return false, err
	}
	n, err := forgetScript.Run(ctx, s.c, []string{key}, lookback, slice).Int()
	return n > 0, err
}

// resetScript: KEYS[1] record; ARGV lookback and slice ms (adminSlice). Reply 1 reset,
// 0 no record, -1 done.
var resetScript = redis.NewScript(luaClock + luaPacked + `
local s = redis.call('HGET', KEYS[1], 's')
if not s then
  local base, id = packedBase(KEYS[1], tonumber(ARGV[2]))
  if base then
    local v, _, err = packedFind(base, id, clock(), tonumber(ARGV[1]), tonumber(ARGV[2]))
    if err then return redis.error_reply(err) end
    if v then return -1 end
  end
  return 0
end
if s == 'd' then return -1 end
redis.call('HSET', KEYS[1], 'a', 0)
return 1
`)

// ResetAttempts implements Admin.
func (s *Redis) ResetAttempts(ctx context.Context, key string) (bool, error) {
	lookback, slice, err := s.adminSlice(ctx, key)
	if err != nil {
		return false, err
	}
	n, err := resetScript.Run(ctx, s.c, []string{key}, lookback, slice).Int()
	return n == 1, err
}

// Inspect implements Admin.
func (m *Memory) Inspect(_ context.Context, key string) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	r := m.record(key, now)
	if r == nil {
		return Record{}, ErrNotFound
	}
	rec := Record{Key: key, State: stateName(string(r.state)), Fence: r.fence, Attempts: r.attempts,
		Fingerprint: r.fp, Result: r.result, TTL: r.expires.Sub(now)}
	if r.state == 'p' {
		rec.Owner, rec.LeaseDeadline = r.owner, r.deadline
	}
	return rec, nil
}

// Forget implements Admin.
func (m *Memory) Forget(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.record(key, m.now())
	delete(m.records, key)
	return r != nil, nil
}

// ResetAttempts implements Admin.
func (m *Memory) ResetAttempts(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.record(key, m.now())
	if r == nil || r.state == 'd' {
		return false, nil
	}
	r.attempts = 0
	return true, nil
}

// RedisView reads projections for handlers (handlers.View) from Redis.
type RedisView struct{ c redis.UniversalClient }

// NewRedisView returns a view on c.
func NewRedisView(c redis.UniversalClient) *RedisView { return &RedisView{c: c} }

// Get implements handlers.View.
func (v *RedisView) Get(ctx context.Context, key string) (string, error) {
	s, err := v.c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return s, err
}

// HGetAll implements handlers.View.
func (v *RedisView) HGetAll(ctx context.Context, key string) (map[string]string, error) {
	return v.c.HGetAll(ctx, key).Result()
}
