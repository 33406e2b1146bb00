package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/handlers"
)

// Redis is the idempotency store on Redis: standalone, Sentinel or Cluster
// through go-redis's UniversalClient. It is safe for concurrent use.
//
// Every batch call is one pipeline of EVALSHA: one round trip (per node on a
// cluster, where go-redis splits the pipeline by slot). Two sharp edges of
// go-redis shape it:
//
//   - EVALSHA in a pipeline has no NOSCRIPT fallback (Script.Run has one, a
//     pipeline does not), so a NOSCRIPT answer (a restarted server, SCRIPT
//     FLUSH, a failover to a replica that never saw SCRIPT LOAD) loads the
//     scripts again and resends only the items answered NOSCRIPT: those did
//     not run, so resending them is safe.
//   - go-redis resends a command whose reply timed out, so a script may run
//     twice with the same arguments; every script is written to allow it
//     (see scripts.go).
type Redis struct {
	c      redis.UniversalClient
	cfg    Config
	prefix string
	seq    atomic.Uint64
	trips  atomic.Uint64

	// The config as script arguments, boxed once rather than per call.
	leaseMS, retentionMS any

	claim, extend, complete, release *redis.Script
}

var _ Store = (*Redis)(nil)

// NewRedis returns a store on c with cfg. It does no I/O: call Load before
// the first batch (a batch that finds the scripts missing loads them too, at
// the cost of a round trip).
func NewRedis(c redis.UniversalClient, cfg Config) (*Redis, error) {
	if c == nil {
		return nil, errors.New("dedupe: nil redis client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dedupe config: %w", err)
	}
	prefix, err := ownerPrefix()
	if err != nil {
		return nil, err
	}
	return &Redis{
		c:           c,
		cfg:         cfg,
		prefix:      prefix,
		leaseMS:     cfg.Lease.Milliseconds(),
		retentionMS: cfg.Retention.Milliseconds(),
		claim:       redis.NewScript(claimScript),
		extend:      redis.NewScript(extendScript),
		complete:    redis.NewScript(completeScript),
		release:     redis.NewScript(releaseScript),
	}, nil
}

// Load loads the scripts with SCRIPT LOAD: into the server, or into every
// master of a cluster. It is safe to call at any time and from several
// goroutines.
func (s *Redis) Load(ctx context.Context) error {
	load := func(ctx context.Context, c redis.Scripter) error {
		for _, sc := range [...]*redis.Script{s.claim, s.extend, s.complete, s.release} {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return load(ctx, c) })
	} else {
		err = load(ctx, s.c)
	}
	if err != nil {
		return fmt.Errorf("load scripts: %w", err)
	}
	return nil
}

// Ping checks that Redis answers.
func (s *Redis) Ping(ctx context.Context) error {
	return s.c.Ping(ctx).Err()
}

// CheckMaxmemoryPolicy returns Redis's maxmemory-policy (on a cluster, the
// first master's that is not noeviction, else noeviction). Anything but
// noeviction lets Redis evict idempotency records under memory pressure, and
// an evicted record lets a duplicate run again: the caller should warn
// loudly. Managed services often disable or rename CONFIG; the error then
// says so, and the policy must be checked by other means.
func (s *Redis) CheckMaxmemoryPolicy(ctx context.Context) (string, error) {
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		return maxmemoryPolicy(ctx, s.c)
	}
	var mu sync.Mutex
	policy := "noeviction"
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		p, err := maxmemoryPolicy(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		if p != "noeviction" {
			policy = p
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return "", err
	}
	return policy, nil
}

func maxmemoryPolicy(ctx context.Context, c redis.Cmdable) (string, error) {
	v, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		var re redis.Error
		if errors.As(err, &re) && !redis.HasErrorPrefix(err, "LOADING") {
			return "", fmt.Errorf("config get maxmemory-policy: CONFIG is disabled, renamed or not permitted on this server (%w); make sure maxmemory-policy is noeviction", err)
		}
		return "", fmt.Errorf("config get maxmemory-policy: %w", err)
	}
	p, ok := v["maxmemory-policy"]
	if !ok {
		return "", errors.New("config get maxmemory-policy: no such parameter in the answer")
	}
	return p, nil
}

// RoundTrips counts the pipelines sent to Redis, NOSCRIPT resends included
// (SCRIPT LOAD is not counted). On a cluster a pipeline is one round trip per
// node it touches.
func (s *Redis) RoundTrips() uint64 { return s.trips.Load() }

// ClaimBatch claims events in one round trip. Every claim gets an owner token
// of its own, so two claims of one key in a batch are two owners (the second
// one finds the first Busy).
//
// A claim the store cannot answer (an empty key, a record key that holds
// something other than a record) fails the whole batch with an error that
// wraps ErrInvalid and names the key: ClaimResult has no per-item error.
func (s *Redis) ClaimBatch(ctx context.Context, claims []Claim) ([]ClaimResult, error) {
	if len(claims) == 0 {
		return nil, nil
	}
	owners := make([]string, len(claims))
	for i, c := range claims {
		if c.Key == "" {
			return nil, fmt.Errorf("claim batch: item %d: %w: empty key", i, ErrInvalid)
		}
		owners[i] = s.owner()
	}
	return s.claimBatch(ctx, claims, owners)
}

// claimBatch claims with the given owner tokens; a test calls it twice with
// the same tokens to see a re-sent claim.
func (s *Redis) claimBatch(ctx context.Context, claims []Claim, owners []string) ([]ClaimResult, error) {
	cmds, err := s.run(ctx, len(claims), func(p redis.Pipeliner, i int) *redis.Cmd {
		return s.claim.EvalSha(ctx, p, []string{claims[i].Key}, owners[i], s.leaseMS, claims[i].Fingerprint, s.retentionMS)
	})
	if err != nil {
		return nil, fmt.Errorf("claim batch: %w", err)
	}
	out := make([]ClaimResult, len(claims))
	for i, cmd := range cmds {
		v, err := cmd.Slice()
		if err != nil {
			return nil, fmt.Errorf("claim batch: claim %s: %w: %w", claims[i].Key, ErrInvalid, err)
		}
		code, _ := replyInt(v, 0)
		switch code {
		case replyAcquired:
			fence, ok1 := replyInt(v, 1)
			attempts, ok2 := replyInt(v, 2)
			took, ok3 := replyInt(v, 3)
			if !ok1 || !ok2 || !ok3 {
				return nil, fmt.Errorf("claim batch: claim %s: unexpected reply %v", claims[i].Key, v)
			}
			out[i] = ClaimResult{
				Outcome:   Acquired,
				Lease:     Lease{Key: claims[i].Key, Owner: owners[i], Fence: fence},
				Attempts:  int(attempts),
				TakenOver: took == 1,
			}
		case replyDup:
			out[i] = ClaimResult{Outcome: Duplicate}
			if len(v) > 1 {
				if b, _ := v[1].(string); b != "" {
					out[i].Result = []byte(b)
				}
			}
		case replyConflict:
			out[i] = ClaimResult{Outcome: Conflict}
		case replyBusy:
			left, ok := replyInt(v, 1)
			if !ok {
				return nil, fmt.Errorf("claim batch: claim %s: unexpected reply %v", claims[i].Key, v)
			}
			out[i] = ClaimResult{Outcome: Busy, RetryAfter: time.Duration(left) * time.Millisecond}
		case replyInvalid:
			return nil, fmt.Errorf("claim batch: claim %s: %w: %v", claims[i].Key, ErrInvalid, replyReason(v))
		default:
			return nil, fmt.Errorf("claim batch: claim %s: unexpected reply %v", claims[i].Key, v)
		}
	}
	return out, nil
}

// ExtendBatch renews leases in one round trip. A per-item ErrLeaseLost means
// the lease is no longer ours; an error wrapping ErrInvalid means the store
// could not run the extension (the record key holds something else); either
// way the run should stop.
func (s *Redis) ExtendBatch(ctx context.Context, leases []Lease) ([]error, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	cmds, err := s.run(ctx, len(leases), func(p redis.Pipeliner, i int) *redis.Cmd {
		l := &leases[i]
		return s.extend.EvalSha(ctx, p, []string{l.Key}, l.Owner, l.Fence, s.leaseMS, s.retentionMS)
	})
	if err != nil {
		return nil, fmt.Errorf("extend batch: %w", err)
	}
	out := make([]error, len(leases))
	for i, cmd := range cmds {
		out[i] = statusError(cmd)
	}
	return out, nil
}

// CompleteBatch completes events in one round trip, each atomically with its
// effects. Per item: nil (done, now or by this same completion before),
// ErrLeaseLost (refused, nothing applied), or an error wrapping ErrInvalid
// (an effect that cannot apply, such as INCRBY on a key that holds no
// integer, or keys of several slots on a cluster; nothing applied and the
// lease is still held, so the caller may release it or complete without the
// effects).
func (s *Redis) CompleteBatch(ctx context.Context, completions []Completion) ([]error, error) {
	if len(completions) == 0 {
		return nil, nil
	}
	cmds, err := s.run(ctx, len(completions), func(p redis.Pipeliner, i int) *redis.Cmd {
		keys, args := completionArgs(&completions[i], s.retentionMS)
		return s.complete.EvalSha(ctx, p, keys, args...)
	})
	if err != nil {
		return nil, fmt.Errorf("complete batch: %w", err)
	}
	out := make([]error, len(completions))
	for i, cmd := range cmds {
		v, err := cmd.Slice()
		if err != nil {
			// The item's own error reply (run reports the others): a
			// wrong type, keys of several slots. Nothing of it was written.
			out[i] = fmt.Errorf("%w: %w", ErrInvalid, err)
			continue
		}
		switch code, _ := replyInt(v, 0); code {
		case replyOK:
		case replyLost:
			out[i] = ErrLeaseLost
		case replyInvalid:
			out[i] = fmt.Errorf("%w: %v", ErrInvalid, replyReason(v))
		default:
			out[i] = fmt.Errorf("%w: unexpected reply %v", ErrInvalid, v)
		}
	}
	return out, nil
}

// Release gives a claim up, keeping fence and attempts: the next claim
// acquires it at once. ErrLeaseLost means it was no longer ours; any other
// error means the store could not be asked, and the lease expires by itself.
func (s *Redis) Release(ctx context.Context, l Lease) error {
	cmds, err := s.run(ctx, 1, func(p redis.Pipeliner, _ int) *redis.Cmd {
		return s.release.EvalSha(ctx, p, []string{l.Key}, l.Owner, l.Fence, s.retentionMS)
	})
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return statusError(cmds[0])
}

// statusError maps the integer reply of extend and release.
func statusError(cmd *redis.Cmd) error {
	n, err := cmd.Int64()
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	case n == replyOK:
		return nil
	case n == replyLost:
		return ErrLeaseLost
	}
	return fmt.Errorf("%w: script refused its arguments", ErrInvalid)
}

// opNames are the completeScript names of the handlers.Op kinds.
var opNames = [...]string{
	handlers.OpIncrBy:  "INCRBY",
	handlers.OpSet:     "SET",
	handlers.OpDel:     "DEL",
	handlers.OpHSet:    "HSET",
	handlers.OpHIncrBy: "HINCRBY",
	handlers.OpHDel:    "HDEL",
	handlers.OpExpire:  "PEXPIRE",
}

// completionArgs encodes a completion for completeScript. An op of an
// unknown kind is sent as "?", which the script refuses as invalid.
func completionArgs(c *Completion, retentionMS any) ([]string, []any) {
	keys := make([]string, 1, 1+len(c.Effects))
	keys[0] = c.Lease.Key
	args := make([]any, 0, 5+4*len(c.Effects))
	args = append(args, c.Lease.Owner, c.Lease.Fence, retentionMS, c.Result, len(c.Effects))
	for _, op := range c.Effects {
		keys = append(keys, op.Key)
		idx := len(keys)
		name := "?"
		if int(op.Kind) < len(opNames) && opNames[op.Kind] != "" {
			name = opNames[op.Kind]
		}
		switch op.Kind {
		case handlers.OpIncrBy:
			args = append(args, name, idx, op.Delta, "")
		case handlers.OpSet:
			args = append(args, name, idx, op.Value, "")
		case handlers.OpHSet:
			args = append(args, name, idx, op.Field, op.Value)
		case handlers.OpHIncrBy:
			args = append(args, name, idx, op.Field, op.Delta)
		case handlers.OpHDel:
			args = append(args, name, idx, op.Field, "")
		case handlers.OpExpire:
			args = append(args, name, idx, op.TTL.Milliseconds(), "")
		default: // OpDel, unknown
			args = append(args, name, idx, "", "")
		}
	}
	return keys, args
}

// run sends n script calls in one pipeline and returns their commands. Items
// answered NOSCRIPT are resent, alone, after the scripts are loaded again.
// An error that is not about one item (the connection, a timeout, LOADING,
// OOM, READONLY …) fails the batch: the store fails closed.
func (s *Redis) run(ctx context.Context, n int, call func(p redis.Pipeliner, i int) *redis.Cmd) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, n)
	var pending []int // nil: all items
	for attempt := 0; ; attempt++ {
		p := s.c.Pipeline()
		if pending == nil {
			for i := range cmds {
				cmds[i] = call(p, i)
			}
		} else {
			for _, i := range pending {
				cmds[i] = call(p, i)
			}
		}
		_, _ = p.Exec(ctx) // errors are read per command below
		s.trips.Add(1)
		var retry []int
		check := func(i int) error {
			switch err := cmds[i].Err(); {
			case err == nil, itemError(err):
				// Item errors are reported per item by the caller.
			case redis.HasErrorPrefix(err, "NOSCRIPT"):
				retry = append(retry, i)
			default:
				return err
			}
			return nil
		}
		if pending == nil {
			for i := range cmds {
				if err := check(i); err != nil {
					return nil, err
				}
			}
		} else {
			for _, i := range pending {
				if err := check(i); err != nil {
					return nil, err
				}
			}
		}
		if len(retry) == 0 {
			return cmds, nil
		}
		if attempt == 2 {
			return nil, fmt.Errorf("scripts missing after reload: %w", cmds[retry[0]].Err())
		}
		if err := s.Load(ctx); err != nil {
			return nil, err
		}
		pending = retry
	}
}

// itemError reports whether err is an error reply about one script call (a
// runtime error in the script, a wrong type, keys of several slots), as
// opposed to the connection, a timeout, or a state of the server (LOADING,
// OOM, READONLY, BUSY, TRYAGAIN, CLUSTERDOWN, NOPERM …) that fails the whole
// batch.
func itemError(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	return redis.HasErrorPrefix(err, "ERR") || redis.HasErrorPrefix(err, "WRONGTYPE") || redis.HasErrorPrefix(err, "CROSSSLOT")
}

// replyInt returns v[i] as an integer.
func replyInt(v []any, i int) (int64, bool) {
	if i >= len(v) {
		return 0, false
	}
	n, ok := v[i].(int64)
	return n, ok
}

// replyReason returns the reason of an invalid reply {-1, reason}.
func replyReason(v []any) any {
	if len(v) > 1 {
		return v[1]
	}
	return "invalid"
}

// owner returns a new owner token: the store's random prefix and a counter,
// unique per claim attempt.
func (s *Redis) owner() string {
	return s.prefix + strconv.FormatUint(s.seq.Add(1), 36)
}
