package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// Inspect implements Admin.
func (s *Redis) Inspect(ctx context.Context, key string) (Record, error) {
	pipe := s.c.Pipeline()
	all := pipe.HGetAll(ctx, key)
	ttl := pipe.PTTL(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil {
		return Record{}, err
	}
	f := all.Val()
	if len(f) == 0 {
		return Record{}, ErrNotFound
	}
	if f["s"] == "" {
		return Record{}, fmt.Errorf("%s holds a hash that is not an idempotency record", key)
	}
	r := Record{Key: key, State: stateName(f["s"]), Owner: f["o"], Fingerprint: f["p"], TTL: ttl.Val()}
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

// Forget implements Admin.
func (s *Redis) Forget(ctx context.Context, key string) (bool, error) {
	n, err := s.c.Del(ctx, key).Result()
	return n > 0, err
}

// resetScript: KEYS[1] record. Reply 1 reset, 0 no record, -1 done.
var resetScript = redis.NewScript(`
local s = redis.call('HGET', KEYS[1], 's')
if not s then return 0 end
if s == 'd' then return -1 end
redis.call('HSET', KEYS[1], 'a', 0)
return 1
`)

// ResetAttempts implements Admin.
func (s *Redis) ResetAttempts(ctx context.Context, key string) (bool, error) {
	n, err := resetScript.Run(ctx, s.c, []string{key}).Int()
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
