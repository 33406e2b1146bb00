package dedupe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/effects"
)

// Errors reported per item by the batch calls.
var (
	// ErrLeaseLost means the claim is no longer ours: another owner took the
	// event over (or it was completed or released by another run). The
	// caller must not treat the event as done by this run.
	ErrLeaseLost = errors.New("lease lost")
	// ErrInvalid means a request is malformed (an empty key, an effect the
	// store cannot apply). Retrying it cannot help.
	ErrInvalid = errors.New("invalid request")
	// ErrNotReplicated means completions were applied on the master but did
	// not reach Config.MinReplicas replicas in time: a failover now could
	// lose them, so they must not count as finished yet. Repeating the call
	// is safe.
	ErrNotReplicated = errors.New("not replicated")
)

// ReplicationError is ErrNotReplicated with its figures.
type ReplicationError struct {
	Want, Got int
	Timeout   time.Duration
}

func (e *ReplicationError) Error() string {
	return fmt.Sprintf("%v: %d of %d replicas acknowledged within %v", ErrNotReplicated, e.Got, e.Want, e.Timeout)
}

// Unwrap makes errors.Is(err, ErrNotReplicated) hold.
func (e *ReplicationError) Unwrap() error { return ErrNotReplicated }

// Outcome is what a claim found.
type Outcome uint8

const (
	// Acquired: the caller owns the event now and must run its handler, then
	// complete or release. ClaimResult.Lease is set.
	Acquired Outcome = iota + 1
	// Duplicate: the event was completed before; acknowledge it without
	// running the handler. ClaimResult.Result holds the stored result.
	Duplicate
	// Conflict: the record of this identity holds another payload
	// fingerprint, in whatever state: the first payload stands for the life
	// of the record. The new message is not the same event.
	Conflict
	// Busy: another owner holds a live lease. Wait ClaimResult.RetryAfter at
	// most, then claim again; never skip the event.
	Busy
	// Invalid: the store can never answer this claim (its record key holds
	// something other than a record, or its keys span Redis Cluster slots);
	// ClaimResult.Reason says why. Nothing was written. The other claims of
	// the batch are answered.
	Invalid
	// Parked: the claim's gate (Claim.Gate) names another event as the
	// key's head: this event must wait behind it. Nothing was written;
	// park it with [Gates.Park] at its turn.
	Parked
)

func (o Outcome) String() string {
	switch o {
	case Acquired:
		return "acquired"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	case Busy:
		return "busy"
	case Invalid:
		return "invalid"
	case Parked:
		return "parked"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Claim asks for ownership of one event. Build it with [NewClaim].
type Claim struct {
	// Key is the idempotency record's key, from [Key].
	Key string
	// Owner is the owner token of this claim attempt, from [Owners.Next];
	// empty, the store makes one. A claim sent again with the same token
	// (after a timeout, when its outcome is unknown) is recognised as the
	// same claim: it answers Acquired with the same fence, and counts no
	// second attempt.
	Owner string
	// Fingerprint identifies the payload; a record with another
	// fingerprint, in any state, makes the claim a Conflict. See
	// [handlers.Fingerprint].
	Fingerprint string
	// Group and Event, which NewClaim sets, let the store find the event's
	// record in the layout of earlier versions of fleet, which a claim of a
	// new record consults while previous records may exist (see doc.go,
	// "Upgrades"). PreviousKey and PreviousFingerprint name that record
	// directly instead; with neither, none is consulted.
	Group string
	Event *handlers.Event
	// PreviousKey and PreviousFingerprint: see Group and Event.
	PreviousKey, PreviousFingerprint string
	// Gate is the key of the event's gate ([GateRef.Gate]), or empty for an
	// event that is not gated. A claim that would acquire while the gate
	// names another event answers Parked.
	Gate string
}

// check refuses a claim the store cannot send: an empty key, or a gate
// outside the record's Redis Cluster slot.
func (c *Claim) check() error {
	if c.Key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	return checkGate(c.Key, c.Gate)
}

// checkGate refuses a gate that does not share record's hash tag.
func checkGate(record, gate string) error {
	if gate == "" {
		return nil
	}
	agg, ok := aggregateOf(record)
	if !ok || !strings.HasPrefix(gate, gatePrefix+agg+"}:") || len(gate) != len(gatePrefix)+len(agg)+2+scopeLen {
		return fmt.Errorf("%w: gate %q is not the gate of record %q", ErrInvalid, gate, record)
	}
	return nil
}

// previous returns the key and fingerprint of the claim's record of the
// previous layout, or "" for none.
func (c *Claim) previous() (key, fingerprint string) {
	if c.PreviousKey != "" || c.Event == nil {
		return c.PreviousKey, c.PreviousFingerprint
	}
	return PreviousKey(c.Group, c.Event.Key, c.Event.Source, c.Event.ID), PreviousFingerprint(c.Event)
}

// Identity returns the identity part of the claim's record key, the event's
// handlers.IdempotencyKey.
func (c Claim) Identity() string {
	if len(c.Key) < identityLen {
		return ""
	}
	return c.Key[len(c.Key)-identityLen:]
}

// NewClaim returns the claim of an event for a consumer group, without an
// owner token. The claim refers to ev, which must not change while the
// claim is in use.
func NewClaim(group string, ev *handlers.Event) Claim {
	return Claim{
		Key:         RecordKey(ev.Aggregate(), handlers.IdempotencyKey(group, ev.Source, ev.ID)),
		Fingerprint: handlers.Fingerprint(*ev),
		Group:       group,
		Event:       ev,
	}
}

// Lease is ownership of one event: the owner token of this claim and its
// fencing token. Extend, Complete and Release are refused unless both match
// the record.
type Lease struct {
	Key   string
	Owner string
	Fence int64
}

// identity is the identity part of the lease's record key.
func (l Lease) identity() string { return Claim{Key: l.Key}.Identity() }

// ClaimResult is the answer to one Claim.
type ClaimResult struct {
	Outcome Outcome
	// Lease is set when Outcome is Acquired.
	Lease Lease
	// TakenOver is true when Acquired took the event from an owner whose
	// lease had expired (a crashed or stalled worker).
	TakenOver bool
	// Attempts counts the claims that acquired this event, this one included;
	// it survives restarts and rebalances.
	Attempts int
	// Result is the stored result of a Duplicate, or nil.
	Result []byte
	// RetryAfter is, for Busy, how long the other owner's lease still runs.
	RetryAfter time.Duration
	// Reason is, for Invalid, why.
	Reason string
	// Head is true when the claim's gate names this event as the key's
	// head (for a Duplicate: or as the head whose end released the
	// current one). The caller must end the head ([Gates.End]) once the
	// event is done, a duplicate, or dead-lettered.
	Head bool
}

// Completion marks a leased event done and applies its effects atomically.
type Completion struct {
	Lease   Lease
	Effects []handlers.Op
	// Result is stored with the record and returned to duplicates.
	Result []byte
}

// Config holds the store's settings.
type Config struct {
	// Lease is how long a claim stays exclusive without an Extend.
	Lease time.Duration
	// Retention is the dedupe window: how long a record (done or not) is kept
	// after its last change.
	Retention time.Duration
	// MinReplicas is how many replicas must hold a completion before
	// CompleteBatch succeeds (Redis WAIT); 0 trusts the master alone, and a
	// failover may then lose completions whose offsets were committed.
	MinReplicas int
	// ReplicaTimeout bounds one WAIT for MinReplicas.
	ReplicaTimeout time.Duration
	// PackDoneRecords packs done records into buckets (packed.go): about
	// 40 to 90 bytes of Redis memory a record instead of 230, for more
	// Redis CPU per event. Claims look for packed records whether or not
	// the store packs, once any store has (SliceKey is set).
	PackDoneRecords bool
}

// DefaultConfig returns a 30 s lease, a 24 h dedupe window, and no replica
// to wait for (1 s per WAIT when MinReplicas is set).
func DefaultConfig() Config {
	return Config{Lease: 30 * time.Second, Retention: 24 * time.Hour, ReplicaTimeout: time.Second}
}

// Validate reports a config the store cannot run with.
func (c Config) Validate() error {
	if err := CheckLease(c.Lease); err != nil {
		return err
	}
	switch {
	case c.Retention < c.Lease:
		return fmt.Errorf("retention %v: must be at least the lease (%v)", c.Retention, c.Lease)
	case c.MinReplicas < 0:
		return fmt.Errorf("redis min replicas %d: must not be negative", c.MinReplicas)
	case c.MinReplicas > 0 && c.ReplicaTimeout < time.Millisecond:
		return fmt.Errorf("replica timeout %v: must be at least 1ms", c.ReplicaTimeout)
	}
	return nil
}

// MinLease is the shortest lease a store gives: shorter, a heartbeat (every
// third of it) would be lost to ordinary latency.
const MinLease = 100 * time.Millisecond

// CheckLease checks a lease's length: the one rule for the store's setting
// and for the engine, which extends the store's leases.
func CheckLease(lease time.Duration) error {
	if lease < MinLease {
		return fmt.Errorf("lease %v: must be at least %v", lease, MinLease)
	}
	return nil
}

// Store is the idempotency protocol. Both implementations, [Redis] and
// [Memory], pass the same contract tests (package dedupetest).
//
// The batch calls return one answer per request, in request order, and an
// error only when the store could not be asked at all (then no answer is
// known, and the caller must retry: every call is safe to repeat).
type Store interface {
	// ClaimBatch claims events; see [Outcome] for the answers.
	ClaimBatch(ctx context.Context, claims []Claim) ([]ClaimResult, error)
	// ExtendBatch renews leases; a per-item ErrLeaseLost means the run must
	// stop.
	ExtendBatch(ctx context.Context, leases []Lease) ([]error, error)
	// CompleteBatch marks events done and applies their effects, each
	// atomically with its record. Repeating a completion that succeeded
	// succeeds again without applying the effects twice. A per-item
	// ErrLeaseLost means the completion was refused and nothing was applied.
	CompleteBatch(ctx context.Context, completions []Completion) ([]error, error)
	// Release gives an event up after a failed run, keeping its fence and
	// attempt count, so that the next claim runs the handler again.
	// ErrLeaseLost means it was no longer ours.
	Release(ctx context.Context, lease Lease) error
	// Unclaim gives up a claim whose handler never ran (a drain, a lease
	// lost while queued): like Release, and the attempt the claim counted
	// is given back. The fence keeps its growth.
	Unclaim(ctx context.Context, lease Lease) error
}

// Key returns the Redis key of the idempotency record of the event (source,
// id) for a consumer group, arriving with a Kafka message key (empty when
// the message had none). See [RecordKey].
func Key(group, messageKey, source, id string) string {
	aggregate := messageKey
	if aggregate == "" {
		aggregate = id
	}
	return RecordKey(aggregate, handlers.IdempotencyKey(group, source, id))
}

// RecordKey returns the key of an idempotency record:
//
//	fleet:idem:{<aggregate>}:<identity>
//
// The identity (handlers.IdempotencyKey) names the event, whatever
// characters its group, source and id contain. The aggregate, the message
// key or the id when there is none, is the hash tag, so that in Redis Cluster
// the record lives in the slot of the aggregate's projection keys (for
// example "ledger:{<account>}:balance"); effects are bound to it (see
// handlers.BoundTo). Since the identity has a fixed length, the aggregate is
// read back unambiguously, '}' and all.
func RecordKey(aggregate, identity string) string {
	return recordPrefix + aggregate + "}:" + identity
}

const recordPrefix = "fleet:idem:{"

// identityLen is the length of handlers.IdempotencyKey.
const identityLen = 22

// aggregateOf returns the aggregate of a record key from [RecordKey].
func aggregateOf(key string) (string, bool) {
	end := len(key) - len("}:") - identityLen
	if !strings.HasPrefix(key, recordPrefix) || end <= len(recordPrefix) || key[end:end+2] != "}:" {
		return "", false
	}
	for _, c := range []byte(key[end+2:]) {
		if !isBase64URL(c) {
			return "", false
		}
	}
	return key[len(recordPrefix):end], true
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// PreviousKey returns the key an event's record had in earlier versions of
// fleet: fleet:idem:{<aggregate>}:<group>:<source>:<id>, with the parts
// joined as they were, so ambiguous. It is read only to honour records
// written before an upgrade (doc.go, "Upgrades"), never written. It is
// empty when the key would read as a record key of the current layout, or
// could lie in another Redis Cluster slot than the current record.
func PreviousKey(group, messageKey, source, id string) string {
	aggregate := messageKey
	if aggregate == "" {
		aggregate = id
	}
	key := recordPrefix + aggregate + "}:" + group + ":" + source + ":" + id
	if _, ok := aggregateOf(key); ok {
		// It reads as a record key of the current layout (an id ending in
		// "}:" and 22 base64url characters): consulting it could touch
		// another event's record.
		return ""
	}
	if _, ok := handlers.HashTag(key); !ok {
		// An aggregate starting with '}' leaves both keys without a hash
		// tag: they would hash whole, to different Redis Cluster slots.
		return ""
	}
	return key
}

// checkBound refuses a completion whose record key is not one, or that has
// an effect on a key its handler may not write (effects.CheckBound: keys
// not bound to the record's aggregate, and fleet's own keys, the records
// above all). Both stores check it before anything else.
func checkBound(c *Completion) error {
	aggregate, ok := aggregateOf(c.Lease.Key)
	if !ok {
		return fmt.Errorf("%w: %s is not an idempotency record key", ErrInvalid, c.Lease.Key)
	}
	if err := effects.CheckBound(aggregate, c.Effects); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Owners makes owner tokens: a random prefix (8 bytes from crypto/rand, hex)
// and a counter, so that tokens are unique per claim attempt, across
// processes too. It is safe for concurrent use.
type Owners struct {
	prefix string
	seq    atomic.Uint64
}

// NewOwners returns a token source with a fresh random prefix.
func NewOwners() *Owners {
	// crypto/rand does not fail on any supported platform (since Go 1.24 it
	// crashes the program instead of returning an error).
	prefix, _ := ownerPrefix()
	return &Owners{prefix: prefix}
}

// Next returns a new owner token.
func (o *Owners) Next() string {
	return o.prefix + strconv.FormatUint(o.seq.Add(1), 36)
}

// ownerPrefix returns a random prefix for the owner tokens of one store:
// 8 bytes from crypto/rand, hex, and a colon. A token is the prefix and a
// counter, so tokens are unique per claim attempt, across processes too.
func ownerPrefix() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("owner prefix: %w", err)
	}
	return hex.EncodeToString(b[:]) + ":", nil
}
