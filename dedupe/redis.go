package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	owners *Owners
	trips  atomic.Uint64
	// previousUntil is when claims stop consulting records of the previous
	// layout (unix ms, this process's clock); 0 until Load has read it:
	// they are consulted meanwhile.
	previousUntil atomic.Int64
	// sliceMS is the slice of packed records (SliceKey); 0 until read.
	sliceMS atomic.Int64

	// The config as script arguments, boxed once rather than per call.
	leaseMS, retentionMS any

	claim, extend, complete, release, sliceLua *redis.Script
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
	return &Redis{
		c:           c,
		cfg:         cfg,
		owners:      NewOwners(),
		leaseMS:     cfg.Lease.Milliseconds(),
		retentionMS: cfg.Retention.Milliseconds(),
		claim:       redis.NewScript(claimScript),
		extend:      redis.NewScript(extendScript),
		complete:    redis.NewScript(completeScript),
		release:     redis.NewScript(releaseScript),
		sliceLua:    redis.NewScript(sliceScript),
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
	if err := s.readSlice(ctx); err != nil {
		return err
	}
	return s.readLayoutSince(ctx)
}

// LayoutKey holds when this Redis first served the current record layout
// (unix ms, the Redis clock), set by the first store that loads, or 0 when
// that store found no record of the previous layout on it (a new
// installation). Records of the previous layout are consulted until a
// retention window and an hour after that time: by then every record a
// worker of the previous version wrote, during a rolling update too, has
// expired (with a retention no longer than the current one). It is not a
// record key (no hash tag follows the prefix), and it falls under the
// ACL's fleet:idem:* pattern.
const LayoutKey = "fleet:idem:layout"

// layoutScript: SET KEYS[1] unless it is set, to now (ms, the Redis clock),
// or to 0 when ARGV[1] is '1' (no previous records); reply {value, now}.
var layoutScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = now
if ARGV[1] == '1' then since = 0 end
redis.call('SET', KEYS[1], since, 'NX')
return {tonumber(redis.call('GET', KEYS[1])) or 0, now}
`)

// readLayoutSince reads (or sets) LayoutKey and from it the end of the
// window in which claims consult records of the previous layout.
func (s *Redis) readLayoutSince(ctx context.Context) error {
	fresh := "0"
	if err := s.c.Get(ctx, LayoutKey).Err(); errors.Is(err, redis.Nil) {
		// The first load on this Redis: is there anything of the
		// previous layout to honour?
		found, err := s.previousRecordsExist(ctx)
		if err != nil {
			return err
		}
		if !found {
			fresh = "1"
		}
	} else if err != nil {
		return fmt.Errorf("read %s: %w", LayoutKey, err)
	}
	v, err := layoutScript.Run(ctx, s.c, []string{LayoutKey}, fresh).Int64Slice()
	if err != nil || len(v) != 2 {
		return fmt.Errorf("read %s: %v %w", LayoutKey, v, err)
	}
	since, redisNow := v[0], v[1]
	if since == 0 {
		s.previousUntil.Store(1) // nothing to consult, ever
		return nil
	}
	skew := time.Now().UnixMilli() - redisNow
	s.previousUntil.Store(max(since+skew+s.cfg.Retention.Milliseconds()+time.Hour.Milliseconds(), 1))
	return nil
}

// previousRecordsExist reports whether Redis may hold records of the
// previous layout: keys under the record prefix that are not current
// record keys. It scans at most scanLimit keys per node; past that, it
// answers true.
func (s *Redis) previousRecordsExist(ctx context.Context) (bool, error) {
	scan := func(ctx context.Context, c redis.Cmdable) (bool, error) {
		var cursor uint64
		for seen := 0; seen < scanLimit; {
			keys, next, err := c.Scan(ctx, cursor, recordPrefix+"*", 1000).Result()
			if err != nil {
				return false, fmt.Errorf("scan for records of the previous layout: %w", err)
			}
			for _, k := range keys {
				if _, ok := aggregateOf(k); !ok && !isBucketKey(k) {
					return true, nil
				}
			}
			seen += 1000
			if cursor = next; cursor == 0 {
				return false, nil
			}
		}
		return true, nil
	}
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, s.c)
	}
	var found atomic.Bool
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		f, err := scan(ctx, c)
		if f {
			found.Store(true)
		}
		return err
	})
	return found.Load(), err
}

// scanLimit bounds the keys previousRecordsExist looks at, per node.
const scanLimit = 1_000_000

// readsPrevious reports whether claims consult records of the previous
// layout now.
func (s *Redis) readsPrevious() bool {
	until := s.previousUntil.Load()
	return until == 0 || time.Now().UnixMilli() < until
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
			return "", fmt.Errorf("config get maxmemory-policy: CONFIG is disabled, renamed or not permitted on this server (%w; managed services often turn it off, and miniredis, the embedded Redis of fleet dev, has none); make sure maxmemory-policy is noeviction", err)
		}
		return "", fmt.Errorf("config get maxmemory-policy: %w", err)
	}
	p, ok := v["maxmemory-policy"]
	if !ok {
		return "", errors.New("config get maxmemory-policy: no such parameter in the answer")
	}
	return p, nil
}

// Replicas returns how many replicas the master has connected (INFO
// replication, connected_slaves); on a cluster, the fewest any master has.
// Completions reach replicas only when Config.MinReplicas asks for them.
func (s *Redis) Replicas(ctx context.Context) (int, error) {
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		return connectedReplicas(ctx, s.c)
	}
	var mu sync.Mutex
	fewest := -1
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := connectedReplicas(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		if fewest < 0 || n < fewest {
			fewest = n
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return 0, err
	}
	return max(fewest, 0), nil
}

func connectedReplicas(ctx context.Context, c redis.Cmdable) (int, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return 0, fmt.Errorf("info replication: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("info replication: connected_slaves %q", v)
			}
			return n, nil
		}
	}
	return 0, errors.New("info replication: no connected_slaves in the answer")
}

// RoundTrips counts the pipelines sent to Redis, NOSCRIPT resends included
// (SCRIPT LOAD is not counted). On a cluster a pipeline is one round trip per
// node it touches.
func (s *Redis) RoundTrips() uint64 { return s.trips.Load() }

// ClaimBatch claims events in one round trip. Every claim has an owner token
// of its own (Claim.Owner, or one the store makes), so two claims of one key
// in a batch are two owners (the second one finds the first Busy).
//
// A claim the store cannot answer (a record key that holds something other
// than a record, keys of several cluster slots) is answered Invalid, and the
// rest of the batch as usual; an empty key fails the whole batch with an
// error that wraps ErrInvalid (a caller's bug, not an event's).
func (s *Redis) ClaimBatch(ctx context.Context, claims []Claim) ([]ClaimResult, error) {
	if len(claims) == 0 {
		return nil, nil
	}
	owners, err := s.claimOwners(claims)
	if err != nil {
		return nil, err
	}
	key := func(i int) string { return claims[i].Key }
	groups := s.group(indices(len(claims)), key)
	touch := "0"
	if s.cfg.MinReplicas > 0 {
		touch = "1"
	}
	previous := s.readsPrevious()
	slice, err := s.slice(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim batch: %w", err)
	}
	call := func(p redis.Pipeliner, items []int) *redis.Cmd {
		n := len(items)
		cmd := evalshaN(s.claim, 3*n, 4+3*n)
		keys, args := cmd[3:3+3*n], cmd[3+3*n:]
		args[0], args[1], args[2], args[3] = s.leaseMS, s.retentionMS, touch, slice
		for j, i := range items {
			c := &claims[i]
			keys[3*j], keys[3*j+1], keys[3*j+2] = c.Key, c.Key, c.Key
			if c.Gate != "" {
				keys[3*j+2] = c.Gate
			}
			args[4+3*j], args[5+3*j], args[6+3*j] = owners[i], c.Fingerprint, ""
			if previous {
				if key, fp := c.previous(); key != "" {
					keys[3*j+1], args[6+3*j] = key, fp
				}
			}
		}
		return queue(ctx, p, cmd)
	}
	// A duplicate lets the caller commit: with MinReplicas, the done record
	// it found must be on the replicas too.
	chunks, err := s.replicated(ctx, groups, key, call)
	if err != nil {
		return nil, fmt.Errorf("claim batch: %w", err)
	}
	out := make([]ClaimResult, len(claims))
	for _, c := range chunks {
		replies, err := c.replies()
		if err != nil {
			// The call's own error reply, for a single item (run resends
			// the items of a failed call alone): nothing of it was written.
			for _, i := range c.items {
				out[i] = ClaimResult{Outcome: Invalid, Reason: fmt.Sprintf("claim %s: %v", claims[i].Key, err)}
			}
			continue
		}
		for j, i := range c.items {
			r, err := claimResult(replies[j], claims[i].Key, owners[i])
			if err != nil {
				return nil, fmt.Errorf("claim batch: claim %s: %w", claims[i].Key, err)
			}
			out[i] = r
		}
	}
	return out, nil
}

// claimOwners checks the claims and returns their owner tokens, making
// one for a claim without.
func (s *Redis) claimOwners(claims []Claim) ([]string, error) {
	owners := make([]string, len(claims))
	for i, c := range claims {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("claim batch: item %d: %w", i, err)
		}
		owners[i] = c.Owner
		if owners[i] == "" {
			owners[i] = s.owners.Next()
		}
	}
	return owners, nil
}

// claimResult decodes one item of a claim reply: a list, or the bare
// integer 1 for the common answer, acquired at fence 1 on the first attempt.
func claimResult(item any, key, owner string) (ClaimResult, error) {
	if n, ok := item.(int64); ok && n == replyAcquired {
		return ClaimResult{Outcome: Acquired, Lease: Lease{Key: key, Owner: owner, Fence: 1}, Attempts: 1}, nil
	}
	v, _ := item.([]any)
	code, _ := replyInt(v, 0)
	switch code {
	case replyAcquired:
		fence, ok1 := replyInt(v, 1)
		attempts, ok2 := replyInt(v, 2)
		took, ok3 := replyInt(v, 3)
		head, _ := replyInt(v, 4)
		if !ok1 || !ok2 || !ok3 {
			break
		}
		return ClaimResult{
			Outcome:   Acquired,
			Lease:     Lease{Key: key, Owner: owner, Fence: fence},
			Attempts:  int(attempts),
			TakenOver: took == 1,
			Head:      head == 1,
		}, nil
	case replyDup:
		r := ClaimResult{Outcome: Duplicate}
		if len(v) > 1 {
			if b, _ := v[1].(string); b != "" {
				r.Result = []byte(b)
			}
		}
		head, _ := replyInt(v, 2)
		r.Head = head == 1
		return r, nil
	case replyParked:
		return ClaimResult{Outcome: Parked}, nil
	case replyConflict:
		return ClaimResult{Outcome: Conflict}, nil
	case replyBusy:
		left, ok := replyInt(v, 1)
		if !ok {
			break
		}
		return ClaimResult{Outcome: Busy, RetryAfter: time.Duration(left) * time.Millisecond}, nil
	case replyInvalid, replyError:
		return ClaimResult{Outcome: Invalid, Reason: fmt.Sprint(replyReason(v))}, nil
	}
	return ClaimResult{}, fmt.Errorf("unexpected reply %v", item)
}

// ExtendBatch renews leases in one round trip. A per-item ErrLeaseLost means
// the lease is no longer ours; an error wrapping ErrInvalid means the store
// could not run the extension (the record key holds something else); either
// way the run should stop.
func (s *Redis) ExtendBatch(ctx context.Context, leases []Lease) ([]error, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	chunks, err := s.run(ctx, s.c.Pipeline, singles(len(leases)), 0, func(p redis.Pipeliner, items []int) *redis.Cmd {
		l := &leases[items[0]]
		return queue(ctx, p, evalsha(s.extend, l.Key, l.Owner, l.Fence, s.leaseMS, s.retentionMS))
	})
	if err != nil {
		return nil, fmt.Errorf("extend batch: %w", err)
	}
	out := make([]error, len(leases))
	for _, c := range chunks {
		out[c.items[0]] = statusError(c.cmd)
	}
	return out, nil
}

// CompleteBatch completes events in one round trip, each atomically with its
// effects. Per item: nil (done, now or by this same completion before),
// ErrLeaseLost (refused, nothing applied), or an error wrapping ErrInvalid
// (an effect that cannot apply, such as INCRBY on a key that holds no
// integer, or on a key not bound to the event's aggregate; nothing applied
// and the lease is still held, so the caller may release it or complete
// without the effects).
//
// With Config.MinReplicas, the call succeeds only once every completion it
// wrote has reached that many replicas (WAIT, on every node the batch
// touched); otherwise it fails with an error wrapping ErrNotReplicated, and
// the caller must not count the events as finished: it repeats the call,
// which is safe.
func (s *Redis) CompleteBatch(ctx context.Context, completions []Completion) ([]error, error) {
	if len(completions) == 0 {
		return nil, nil
	}
	out := make([]error, len(completions))
	send := make([]int, 0, len(completions))
	for i := range completions {
		if err := checkBound(&completions[i]); err != nil {
			out[i] = err
			continue
		}
		send = append(send, i)
	}
	slice, err := s.slice(ctx)
	if err != nil {
		return nil, fmt.Errorf("complete batch: %w", err)
	}
	groups := s.group(send, func(i int) string { return completions[i].Lease.Key })
	call := func(p redis.Pipeliner, items []int) *redis.Cmd {
		return queue(ctx, p, s.completionCmd(completions, items, slice))
	}
	chunks, err := s.replicated(ctx, groups, func(i int) string { return completions[i].Lease.Key }, call)
	if err != nil {
		return nil, fmt.Errorf("complete batch: %w", err)
	}
	for _, c := range chunks {
		replies, err := c.replies()
		if err != nil {
			// The call's own error reply, for a single item (run resends
			// the items of a failed call alone): nothing of it was written.
			for _, i := range c.items {
				out[i] = fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			continue
		}
		for j, i := range c.items {
			// Done and lost are bare integers; the rest are lists.
			code, ok := replies[j].(int64)
			v, _ := replies[j].([]any)
			if !ok {
				code, _ = replyInt(v, 0)
			}
			switch code {
			case replyOK:
			case replyLost:
				out[i] = ErrLeaseLost
			case replyInvalid, replyError:
				out[i] = fmt.Errorf("%w: %v", ErrInvalid, replyReason(v))
			default:
				out[i] = fmt.Errorf("%w: unexpected reply %v", ErrInvalid, replies[j])
			}
		}
	}
	return out, nil
}

// Release gives a claim up, keeping fence and attempts: the next claim
// acquires it at once. ErrLeaseLost means it was no longer ours; any other
// error means the store could not be asked, and the lease expires by itself.
func (s *Redis) Release(ctx context.Context, l Lease) error {
	return s.releaseLease(ctx, l, "0")
}

// Unclaim is Release for a claim whose handler never ran: the attempt it
// counted is given back.
func (s *Redis) Unclaim(ctx context.Context, l Lease) error {
	return s.releaseLease(ctx, l, "1")
}

func (s *Redis) releaseLease(ctx context.Context, l Lease, unrun string) error {
	chunks, err := s.run(ctx, s.c.Pipeline, singles(1), 0, func(p redis.Pipeliner, _ []int) *redis.Cmd {
		return queue(ctx, p, evalsha(s.release, l.Key, l.Owner, l.Fence, s.retentionMS, unrun))
	})
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return statusError(chunks[0].cmd)
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

// completionCmd encodes the completions items as one call of
// completeScript. An op of an unknown kind is sent as "?", which the script
// refuses as invalid.
func (s *Redis) completionCmd(all []Completion, items []int, slice any) []any {
	nk, na := 0, 3
	for _, i := range items {
		nk += 1 + len(all[i].Effects)
		na += 5 + 4*len(all[i].Effects)
	}
	cmd := evalshaN(s.complete, nk, na)
	// Keys and arguments are appended side by side into their own parts of
	// cmd, which has exactly the room for both.
	keys, args := cmd[3:3], cmd[3+nk:3+nk]
	args = append(args, s.retentionMS, len(items), slice)
	for _, i := range items {
		c := &all[i]
		keys = append(keys, c.Lease.Key)
		args = append(args, 1+len(c.Effects), c.Lease.Owner, c.Lease.Fence, c.Result, len(c.Effects))
		for j, op := range c.Effects {
			keys = append(keys, op.Key)
			idx := j + 2 // key 1 is the record
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
	}
	return cmd
}

// evalshaN returns the arguments of an EVALSHA of sc with nkeys keys and
// nargs arguments, the keys and arguments still to be filled in. Every
// script of the store has at least one key.
func evalshaN(sc *redis.Script, nkeys, nargs int) []any {
	cmd := make([]any, 3+nkeys+nargs)
	cmd[0], cmd[1], cmd[2] = "evalsha", sc.Hash(), nkeys
	return cmd
}

// evalsha returns the arguments of an EVALSHA of sc on one key.
func evalsha(sc *redis.Script, key string, args ...any) []any {
	cmd := evalshaN(sc, 1, len(args))
	cmd[3] = key
	copy(cmd[4:], args)
	return cmd
}

// queue queues an EVALSHA built by evalshaN on p. Built in place, the
// arguments are not copied again as Script.EvalSha would; on a cluster the
// command is routed by its first key.
func queue(ctx context.Context, p redis.Pipeliner, args []any) *redis.Cmd {
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	_ = p.Process(ctx, cmd)
	return cmd
}

// maxChunk caps the items of one script call, so that one call keeps the
// server busy for a millisecond or two at most.
const maxChunk = 128

// chunk is one script call of a batch: the batch items it carries, in order,
// and its command.
type chunk struct {
	items []int
	cmd   *redis.Cmd
}

// replies returns the call's reply, one entry per item.
func (c chunk) replies() ([]any, error) {
	v, err := c.cmd.Slice()
	if err != nil {
		return nil, err
	}
	if len(v) != len(c.items) {
		return nil, fmt.Errorf("%d replies for %d items", len(v), len(c.items))
	}
	return v, nil
}

// singles puts each of n items in a script call of its own.
func singles(n int) [][]int {
	g := make([][]int, n)
	for i := range g {
		g[i] = []int{i}
	}
	return g
}

// indices returns the items 0 … n-1.
func indices(n int) []int {
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	return items
}

// group splits items (indices into a batch) into script calls of at most
// maxChunk items, keeping their order: consecutive runs on a single server,
// and on a cluster the items of one hash slot together (a script may only
// touch one slot). key returns the key of batch item i.
func (s *Redis) group(items []int, key func(i int) string) [][]int {
	var groups [][]int
	if _, ok := s.c.(*redis.ClusterClient); !ok {
		for lo := 0; lo < len(items); lo += maxChunk {
			hi := min(lo+maxChunk, len(items))
			groups = append(groups, items[lo:hi:hi])
		}
		return groups
	}
	open := map[uint16]int{} // slot -> index of its open group
	for _, i := range items {
		sl := slot(key(i))
		gi, ok := open[sl]
		if !ok || len(groups[gi]) == maxChunk {
			gi = len(groups)
			open[sl] = gi
			groups = append(groups, nil)
		}
		groups[gi] = append(groups[gi], i)
	}
	return groups
}

// run sends one script call per group of items, all in one pipeline from
// pipe, and returns the answered calls. A call answered NOSCRIPT did not run:
// it is resent once the scripts are loaded again. A call of several items
// that failed as a whole with an error about the call (a runtime error in the
// script, a wrong type) is resent item by item, so that each item gets its
// own answer; resending is safe, since every script is. Any other error (the
// connection, a timeout, LOADING, OOM, READONLY, MOVED …) fails the batch:
// the store fails closed.
//
// With replicas above 0, every pipeline ends with a WAIT on its connection
// (which carried its writes), and a WAIT that hears from fewer replicas
// fails the call with a ReplicationError once every answer is read.
func (s *Redis) run(ctx context.Context, pipe func() redis.Pipeliner, groups [][]int, replicas int, call func(p redis.Pipeliner, items []int) *redis.Cmd) ([]chunk, error) {
	done := make([]chunk, 0, len(groups))
	pending := make([]chunk, len(groups))
	for i, g := range groups {
		pending[i].items = g
	}
	var short error
	for reloads := 0; len(pending) > 0; {
		p := pipe()
		for i := range pending {
			pending[i].cmd = call(p, pending[i].items)
		}
		var wait *redis.IntCmd
		if replicas > 0 {
			// Pipeliner has no Wait method: WAIT is sent as a plain
			// command, read within the client's read timeout.
			wait = redis.NewIntCmd(ctx, "wait", replicas, s.cfg.ReplicaTimeout.Milliseconds())
			_ = p.Process(ctx, wait)
		}
		_, _ = p.Exec(ctx) // errors are read per command below
		s.trips.Add(1)
		var next []chunk
		var noscript error
		for _, c := range pending {
			switch err := c.cmd.Err(); {
			case err == nil:
				done = append(done, c)
			case redis.HasErrorPrefix(err, "NOSCRIPT"):
				noscript = err
				next = append(next, chunk{items: c.items})
			case itemError(err) && len(c.items) > 1:
				for _, i := range c.items {
					next = append(next, chunk{items: []int{i}})
				}
			case itemError(err):
				done = append(done, c)
			default:
				return nil, err
			}
		}
		if wait != nil {
			switch n, err := wait.Result(); {
			case err != nil:
				return nil, fmt.Errorf("wait for replicas: %w", err)
			case n < int64(replicas):
				short = &ReplicationError{Want: replicas, Got: int(n), Timeout: s.cfg.ReplicaTimeout}
			}
		}
		if noscript != nil {
			if reloads == 2 {
				return nil, fmt.Errorf("scripts missing after reload: %w", noscript)
			}
			reloads++
			if err := s.Load(ctx); err != nil {
				return nil, err
			}
		}
		pending = next
	}
	if short != nil {
		return nil, short
	}
	return done, nil
}

// replicated is run, each pipeline ending with a WAIT for Config.MinReplicas
// (none without it): through the client, or on a cluster through each
// master's own (runOnMasters).
func (s *Redis) replicated(ctx context.Context, groups [][]int, key func(i int) string, call func(p redis.Pipeliner, items []int) *redis.Cmd) ([]chunk, error) {
	if cc, ok := s.c.(*redis.ClusterClient); ok && s.cfg.MinReplicas > 0 {
		return s.runOnMasters(ctx, cc, groups, key, call)
	}
	return s.run(ctx, s.c.Pipeline, groups, s.cfg.MinReplicas, call)
}

// runOnMasters is run on a cluster when writes must reach replicas:
// WAIT counts the writes of its own connection, and a cluster pipeline sends
// each node's commands on a connection the caller cannot address, so the
// groups are sent to each master through its own client, each pipeline
// ending with a WAIT. A slot that moved meanwhile (MOVED, ASK) fails the
// call after the cluster's view is reloaded: the caller repeats it.
func (s *Redis) runOnMasters(ctx context.Context, cc *redis.ClusterClient, groups [][]int, key func(i int) string, call func(p redis.Pipeliner, items []int) *redis.Cmd) ([]chunk, error) {
	type node struct {
		c      *redis.Client
		groups [][]int
	}
	nodes := map[string]*node{}
	var order []string
	for _, g := range groups {
		c, err := cc.MasterForKey(ctx, key(g[0]))
		if err != nil {
			return nil, err
		}
		addr := c.Options().Addr
		if nodes[addr] == nil {
			nodes[addr] = &node{c: c}
			order = append(order, addr)
		}
		nodes[addr].groups = append(nodes[addr].groups, g)
	}
	results := make([][]chunk, len(order))
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, addr := range order {
		n := nodes[addr]
		wg.Go(func() { results[i], errs[i] = s.run(ctx, n.c.Pipeline, n.groups, s.cfg.MinReplicas, call) })
	}
	wg.Wait()
	var out []chunk
	for i, err := range errs {
		if err != nil {
			if redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") {
				cc.ReloadState(ctx)
			}
			return nil, err
		}
		out = append(out, results[i]...)
	}
	return out, nil
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
