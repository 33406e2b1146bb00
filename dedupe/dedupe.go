package dedupe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetworks/fleet/handlers"
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
)

// Outcome is what a claim found.
type Outcome uint8

const (
	// Acquired: the caller owns the event now and must run its handler, then
	// complete or release. ClaimResult.Lease is set.
	Acquired Outcome = iota + 1
	// Duplicate: the event was completed before; acknowledge it without
	// running the handler. ClaimResult.Result holds the stored result.
	Duplicate
	// Conflict: an event with the same identity completed with a different
	// payload fingerprint. The new message is not the same event.
	Conflict
	// Busy: another owner holds a live lease. Wait ClaimResult.RetryAfter at
	// most, then claim again; never skip the event.
	Busy
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
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Claim asks for ownership of one event.
type Claim struct {
	// Key is the idempotency record's key, from [Key].
	Key string
	// Fingerprint identifies the payload; a done record with another
	// fingerprint makes the claim a Conflict. See [Fingerprint].
	Fingerprint string
}

// Lease is ownership of one event: the owner token of this claim and its
// fencing token. Extend, Complete and Release are refused unless both match
// the record.
type Lease struct {
	Key   string
	Owner string
	Fence int64
}

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
}

// Completion marks a leased event done and applies its effects atomically.
type Completion struct {
	Lease   Lease
	Effects []handlers.Op
	// Result is stored with the record and returned to duplicates.
	Result []byte
}

// Config holds the store's timing.
type Config struct {
	// Lease is how long a claim stays exclusive without an Extend.
	Lease time.Duration
	// Retention is the dedupe window: how long a record (done or not) is kept
	// after its last change.
	Retention time.Duration
}

// DefaultConfig returns a 30 s lease and a 24 h dedupe window.
func DefaultConfig() Config {
	return Config{Lease: 30 * time.Second, Retention: 24 * time.Hour}
}

// Validate reports a config the store cannot run with.
func (c Config) Validate() error {
	switch {
	case c.Lease < 100*time.Millisecond:
		return fmt.Errorf("lease %v: must be at least 100ms", c.Lease)
	case c.Retention < c.Lease:
		return fmt.Errorf("retention %v: must be at least the lease (%v)", c.Retention, c.Lease)
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
}

// Key returns the Redis key of the idempotency record of the event (source,
// id) for a consumer group, with the aggregate as hash tag:
//
//	fleet:idem:{<aggregate>}:<group>:<source>:<id>
//
// The aggregate is the Kafka message key, or the event id when the message has
// none, so that in Redis Cluster the record lives in the slot of the
// aggregate's projection keys (for example "ledger:{<account>}:balance").
func Key(group, aggregate, source, id string) string {
	if aggregate == "" {
		aggregate = id
	}
	var b strings.Builder
	b.Grow(len("fleet:idem:{}:::") + len(aggregate) + len(group) + len(source) + len(id))
	b.WriteString("fleet:idem:{")
	b.WriteString(aggregate)
	b.WriteString("}:")
	b.WriteString(group)
	b.WriteByte(':')
	b.WriteString(source)
	b.WriteByte(':')
	b.WriteString(id)
	return b.String()
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
