package handlers

import "time"

// OpKind names a Redis effect a handler can stage.
type OpKind uint8

const (
	// OpIncrBy adds Delta to the integer at Key.
	OpIncrBy OpKind = iota + 1
	// OpSet sets Key to Value.
	OpSet
	// OpDel deletes Key.
	OpDel
	// OpHSet sets Field of the hash at Key to Value.
	OpHSet
	// OpHIncrBy adds Delta to Field of the hash at Key.
	OpHIncrBy
	// OpHDel deletes Field of the hash at Key.
	OpHDel
	// OpExpire sets the time to live of Key to TTL.
	OpExpire
)

func (k OpKind) String() string {
	switch k {
	case OpIncrBy:
		return "INCRBY"
	case OpSet:
		return "SET"
	case OpDel:
		return "DEL"
	case OpHSet:
		return "HSET"
	case OpHIncrBy:
		return "HINCRBY"
	case OpHDel:
		return "HDEL"
	case OpExpire:
		return "PEXPIRE"
	}
	return "UNKNOWN"
}

// Op is one staged effect. Only the fields its Kind names are meaningful.
type Op struct {
	Kind  OpKind
	Key   string
	Field string
	Value string
	Delta int64
	TTL   time.Duration
}

// Tx is one run of a handler for one event: it carries the idempotency key and
// fencing token of the claim, and collects the Redis effects that the store
// applies atomically with completion. Nothing staged on a Tx touches Redis
// before the handler returns nil; effects of a failed run are discarded.
//
// Every key a handler stages must carry the event's aggregate as its hash tag
// (for example "ledger:{<account>}:balance" for an event keyed by the
// account; see [BoundTo]): the store refuses any other, so that the effects
// and the idempotency record live in one Redis Cluster slot, and a copy of
// the event under another key cannot change this key's state.
//
// A Tx is not safe for concurrent use.
type Tx struct {
	key     string
	fence   int64
	attempt int
	ops     []Op
	result  []byte
}

// NewTx returns a Tx for a claim with the given idempotency key, fencing token
// and attempt number (1 for the first run).
func NewTx(key string, fence int64, attempt int) *Tx {
	return &Tx{key: key, fence: fence, attempt: attempt}
}

// IdempotencyKey identifies the event within its consumer group: it is
// [IdempotencyKey] of the group, source and id, the same for every copy of
// the event whatever its Kafka key. Pass it to downstream systems that
// deduplicate requests.
func (t *Tx) IdempotencyKey() string { return t.key }

// Fence is the fencing token of this run. It grows every time another run
// takes the event over, so a downstream system that remembers the highest
// fence it has seen for a key can refuse a stale writer.
func (t *Tx) Fence() int64 { return t.fence }

// Attempt is the number of this run for this event, counted across restarts
// and rebalances; 1 is the first.
func (t *Tx) Attempt() int { return t.attempt }

// IncrBy stages an increment of the integer at key.
func (t *Tx) IncrBy(key string, delta int64) {
	t.ops = append(t.ops, Op{Kind: OpIncrBy, Key: key, Delta: delta})
}

// Set stages setting key to value.
func (t *Tx) Set(key, value string) {
	t.ops = append(t.ops, Op{Kind: OpSet, Key: key, Value: value})
}

// Del stages deleting key.
func (t *Tx) Del(key string) {
	t.ops = append(t.ops, Op{Kind: OpDel, Key: key})
}

// HSet stages setting field of the hash at key.
func (t *Tx) HSet(key, field, value string) {
	t.ops = append(t.ops, Op{Kind: OpHSet, Key: key, Field: field, Value: value})
}

// HIncrBy stages an increment of field of the hash at key.
func (t *Tx) HIncrBy(key, field string, delta int64) {
	t.ops = append(t.ops, Op{Kind: OpHIncrBy, Key: key, Field: field, Delta: delta})
}

// HDel stages deleting field of the hash at key.
func (t *Tx) HDel(key, field string) {
	t.ops = append(t.ops, Op{Kind: OpHDel, Key: key, Field: field})
}

// Expire stages setting the time to live of key. A ttl below one millisecond
// is raised to one millisecond.
func (t *Tx) Expire(key string, ttl time.Duration) {
	t.ops = append(t.ops, Op{Kind: OpExpire, Key: key, TTL: max(ttl, time.Millisecond)})
}

// Stage stages op through the method of its kind (IncrBy for OpIncrBy, …),
// as a handler calling that method would; an op of no kind is dropped.
// For effects that arrive as data: an HTTP handler's, a test's.
func (t *Tx) Stage(op Op) {
	switch op.Kind {
	case OpIncrBy:
		t.IncrBy(op.Key, op.Delta)
	case OpSet:
		t.Set(op.Key, op.Value)
	case OpDel:
		t.Del(op.Key)
	case OpHSet:
		t.HSet(op.Key, op.Field, op.Value)
	case OpHIncrBy:
		t.HIncrBy(op.Key, op.Field, op.Delta)
	case OpHDel:
		t.HDel(op.Key, op.Field)
	case OpExpire:
		t.Expire(op.Key, op.TTL)
	}
}

// SetResult stores a small result with the completion; duplicates of the event
// are acknowledged with it. Keep it small: it is kept for the whole dedupe
// window.
func (t *Tx) SetResult(b []byte) { t.result = append(t.result[:0], b...) }

// Ops returns the staged effects in the order they were staged.
func (t *Tx) Ops() []Op { return t.ops }

// Result returns what SetResult stored, or nil.
func (t *Tx) Result() []byte { return t.result }

// Reset discards staged effects and the result, keeping the claim. The
// engine never needs it: every attempt gets a fresh Tx (a failed attempt's
// effects are dropped with its Tx). It is for code that runs a handler more
// than once on one Tx, a test say, and must start each run clean.
func (t *Tx) Reset() {
	t.ops = t.ops[:0]
	t.result = t.result[:0]
}
