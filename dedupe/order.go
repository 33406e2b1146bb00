package dedupe

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Gates keep a key's events in order through retry tiers (docs/ordering.md):
// a gate names the head of a key, the event that waits in a retry tier or
// was dead-lettered under hold, and queues the followers parked behind it.
// A gate lives in the key's slot, beside the key's idempotency records, so
// that every step is one atomic script. These are the gates' own steps; the
// claim, completion and release scripts will consult them too.
type Gates interface {
	// Hold makes head the head of ref's gate: it creates the gate (held
	// when held, else parked), which records ref for listing, or, when
	// the gate names head already, sets its state. A gate that names
	// another event is ErrNotHead.
	Hold(ctx context.Context, ref GateRef, head string, held bool) error
	// Park queues f behind the gate's head; record is f's idempotency
	// record. See ParkAnswer. (A copy of a head that was dead-lettered and
	// has ended is queued like any follower here: the claim will answer
	// it first, with the record's dead-lettered state, docs/ordering.md.)
	Park(ctx context.Context, gate, record string, f Follower, limits GateLimits) (ParkAnswer, error)
	// End ends head: when the gate names it, the next follower becomes the
	// head (released) and is returned, or, with none queued, the gate is
	// deleted (nil). Ended again, the same follower is returned while it
	// is released and not started. For any other event it does nothing.
	End(ctx context.Context, gate, head string) (*Follower, error)
	// Skip ends head, released and never to run (dead-lettered before its
	// start), as End does, except that the next head remembers by (the
	// head whose end released the skipped one) as the head whose end
	// released it: a copy of by read again redoes the whole chain.
	Skip(ctx context.Context, gate, head, by string) (*Follower, error)
	// Unblock ends the head of a held gate; a gate not held is
	// ErrNotHeld, unless the unblock is being redone (its follower is
	// returned again). A held head with nothing queued is let go with its
	// gate, so that an unblock of it redone is ErrNotHeld: nothing is kept
	// to tell it from a key never held.
	Unblock(ctx context.Context, gate string) (*Follower, error)
	// Gate returns the gate, or nil when there is none.
	Gate(ctx context.Context, gate string) (*GateInfo, error)
	// ReleaseGate is Release (a run that failed) followed, only when the
	// release succeeds, by step on ref's gate for the lease's event, in one
	// atomic step. For GateEndHead it returns the follower the end
	// released, if any. A hold whose gate names another event holds
	// nothing: the release is done, and the error is ErrNotHead.
	ReleaseGate(ctx context.Context, lease Lease, ref GateRef, step GateStep) (*Follower, error)
	// ListGates returns how many gates there are and the oldest of them,
	// up to limit, oldest first.
	ListGates(ctx context.Context, limit int) (GateList, error)
}

// GateList is what ListGates found.
type GateList struct {
	// Total counts the gates (on Redis: the entries of the index, which a
	// gate deleted by a crashed worker may outlive for a minute).
	Total int
	// Gates are the oldest, oldest first.
	Gates []GateInfo
}

// GateStep is what ReleaseGate does to the gate once the release succeeds.
type GateStep uint8

const (
	// GateHoldParked: the event moves to a retry tier; it becomes (or
	// stays) its key's head, parked.
	GateHoldParked GateStep = iota + 1
	// GateHoldHeld: the event was dead-lettered under hold; it becomes (or
	// stays) its key's head, held.
	GateHoldHeld
	// GateEndHead: the event was dead-lettered under continue; if it is
	// its key's head, its end releases the next follower.
	GateEndHead
)

// code is the step as releaseGateScript takes it.
func (s GateStep) code() string {
	switch s {
	case GateHoldParked:
		return "p"
	case GateHoldHeld:
		return "x"
	case GateEndHead:
		return "e"
	}
	return "?"
}

var (
	// ErrNotHead: the gate names another event as its head.
	ErrNotHead = errors.New("the gate names another event as its head")
	// ErrNotHeld: the gate is not held.
	ErrNotHeld = errors.New("the key is not held")
)

// OrderScope names the gates of one consumer group, source topic and source
// partition: 22 base64url characters of SHA-256 over the length-prefixed
// parts, so that no separator in a name makes two scopes one.
func OrderScope(group, topic string, partition int) string {
	var b []byte
	for _, s := range [...]string{orderDomain, group, topic, strconv.Itoa(partition)} {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

const orderDomain = "fleet order scope v1"

// scopeLen is the length of an OrderScope.
const scopeLen = 22

// GateRef names a gate: the consumer group, source topic and partition,
// and the message key.
type GateRef struct {
	Group, Topic string
	Partition    int
	Key          string
}

// Gateable reports whether events of a message key can be gated: the key
// is not empty (a keyless event's aggregate is its own id: it has no order
// to keep), and its gate shares the slot of its records, which a key that
// starts with '}' would not (its hash tag would be empty, and Redis would
// hash each whole key).
func Gateable(key string) bool { return key != "" && key[0] != '}' }

// Gate is the key of ref's gate.
func (r GateRef) Gate() string { return GateKey(r.Key, OrderScope(r.Group, r.Topic, r.Partition)) }

// GateKey is the key of the gate of a message key in a scope:
//
//	fleet:order:{<key>}:<scope>
//
// and its queue of followers is the same key with ":q" after it.
func GateKey(key, scope string) string { return gatePrefix + key + "}:" + scope }

const gatePrefix = "fleet:order:{"

// GateState is a head's state.
type GateState byte

const (
	// GateParked: the head waits in a retry tier.
	GateParked GateState = 'p'
	// GateReleased: the head is a follower handed back, not started.
	GateReleased GateState = 'r'
	// GateRunning: the head's claim was acquired.
	GateRunning GateState = 'a'
	// GateHeld: the head was dead-lettered under hold.
	GateHeld GateState = 'x'
)

// String names the state for people: parked, released, running or held.
func (s GateState) String() string {
	switch s {
	case GateParked:
		return "parked"
	case GateReleased:
		return "released"
	case GateRunning:
		return "running"
	case GateHeld:
		return "held"
	}
	return fmt.Sprintf("GateState(%q)", rune(s))
}

// Follower is an event parked behind a head. Item is what the engine needs
// to run it again (a pointer into its source, or the whole message), opaque
// to the store.
type Follower struct {
	Identity    string
	Fingerprint string
	Item        []byte
}

// check refuses a follower the store could not keep whole.
func (f Follower) check() error {
	if !isIdentity(f.Identity) || f.Fingerprint == "" || strings.ContainsAny(f.Fingerprint, "\n") {
		return fmt.Errorf("%w: follower identity %q or fingerprint %q", ErrInvalid, f.Identity, f.Fingerprint)
	}
	return nil
}

// isIdentity reports whether s is an identity (handlers.IdempotencyKey):
// 22 base64url characters.
func isIdentity(s string) bool {
	ok := len(s) == identityLen
	for i := 0; ok && i < len(s); i++ {
		ok = isBase64URL(s[i])
	}
	return ok
}

// checkHold refuses a gate or head the store could not keep right.
func checkHold(ref GateRef, head string) error {
	switch {
	case !Gateable(ref.Key):
		return fmt.Errorf("%w: key %q cannot be gated (empty, or starting with '}')", ErrInvalid, ref.Key)
	case !isIdentity(head):
		return fmt.Errorf("%w: head %q is not an identity", ErrInvalid, head)
	}
	return nil
}

// encode is f as one queue element: identity, ':', fingerprint, '\n', item.
func (f Follower) encode() string {
	return f.Identity + ":" + f.Fingerprint + "\n" + string(f.Item)
}

func decodeFollower(s string) (*Follower, error) {
	head, item, ok := strings.Cut(s, "\n")
	if !ok || len(head) < identityLen+2 || head[identityLen] != ':' {
		return nil, fmt.Errorf("queued follower %q: not fleet's", truncate(s))
	}
	return &Follower{Identity: head[:identityLen], Fingerprint: head[identityLen+1:], Item: []byte(item)}, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// GateLimits bound a gate's queue.
type GateLimits struct {
	// MaxFollowers is the most followers a gate queues; 0: no bound.
	MaxFollowers int
}

// ParkAnswer is what Park found.
type ParkAnswer uint8

const (
	// ParkQueued: the follower is queued now; its source offset may be
	// committed.
	ParkQueued ParkAnswer = iota + 1
	// ParkFree: there is no gate; run the event.
	ParkFree
	// ParkHead: the gate names this event as its head (parked, running or
	// held: this is a copy of it); claim it. A head released and not
	// started answers ParkQueuedBefore: its released copy holds its place.
	ParkHead
	// ParkDuplicate: the event is done; acknowledge it.
	ParkDuplicate
	// ParkConflict: the event is queued, or done, with another payload.
	ParkConflict
	// ParkOverflow: the gate's queue is full.
	ParkOverflow
	// ParkQueuedBefore: a copy of the follower, with this payload, was
	// queued (or released) before: this one is acknowledged (a producer's
	// resend, or the same message read again after a crash; queuing is
	// idempotent).
	ParkQueuedBefore
)

func (a ParkAnswer) String() string {
	switch a {
	case ParkQueued:
		return "parked"
	case ParkFree:
		return "free"
	case ParkHead:
		return "head"
	case ParkDuplicate:
		return "duplicate"
	case ParkConflict:
		return "conflict"
	case ParkOverflow:
		return "overflow"
	case ParkQueuedBefore:
		return "queued before"
	}
	return fmt.Sprintf("ParkAnswer(%d)", uint8(a))
}

// GateInfo is a gate as it stands.
type GateInfo struct {
	// Key is the gate's key.
	Key string
	// Ref is what the gate was made for.
	Ref   GateRef
	Head  string
	State GateState
	Since time.Time
	// ReleasedBy is the head whose end released this head, if any.
	ReleasedBy string
	// Released is the released head, until it starts.
	Released *Follower
	// Queued counts the followers; Bytes their items.
	Queued int
	Bytes  int64
}
