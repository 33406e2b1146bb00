package console

import (
	"context"
	"errors"
	"time"
)

// Backend is what the console shows and changes: one consumer group's
// broker and Redis, through three small ports. fleet console and fleet dev
// implement it over Kafka and the idempotency store (internal/cli); the
// console itself knows neither.
//
// Every error a Backend returns is shown to the operator as it is: it must
// hold nothing secret (no password, no token, no URL with credentials).
// Its methods are called concurrently.
type Backend interface {
	Overviewer
	DeadLetterStore
	RecordStore
	KeyHolds
}

// Overviewer reads the state of the group.
type Overviewer interface {
	// Group is the consumer group the console is about.
	Group() string
	// Overview reads the group's members, partitions, retry tiers, held
	// keys and last failures. A part that cannot be read is left empty
	// and said in Overview.Problems; only a total failure is an error.
	Overview(ctx context.Context) (Overview, error)
}

// DeadLetterStore lists, shows and replays dead letters.
type DeadLetterStore interface {
	// DeadLetters returns the dead letters f selects, newest first (by
	// the time they were written, then by offset), at most f.Limit of
	// them after skipping f.Skip, and how many match in all.
	DeadLetters(ctx context.Context, f Filter) (letters []DeadLetter, total int, err error)
	// DeadLetter returns one dead letter, with its idempotency record;
	// ErrNotFound when there is none at ref.
	DeadLetter(ctx context.Context, ref LetterRef) (DeadLetter, error)
	// Replay decides what becomes of each dead letter sel selects and,
	// unless dryRun, republishes those to replay (fleet dlq replay's
	// rules). progress, when not nil, is called as dead letters are done.
	Replay(ctx context.Context, sel Selection, dryRun bool, progress func(done, total int)) (ReplayReport, error)
}

// RecordStore looks up and forgets idempotency records.
type RecordStore interface {
	// Record looks up an idempotency record; ErrNotFound when there is
	// none.
	Record(ctx context.Context, ref RecordRef) (Record, error)
	// Forget deletes an idempotency record (done or not) so that the
	// event runs again when it is delivered again; false when there was
	// none.
	Forget(ctx context.Context, ref RecordRef) (bool, error)
}

// KeyHolds lists and ends the holds of ordered retries.
type KeyHolds interface {
	// HeldKeys are the group's keys whose events wait behind a head.
	HeldKeys(ctx context.Context) ([]HeldKey, error)
	// Unblock ends the hold on a key whose ordered retries wait behind a
	// head (fleet keys unblock): it answers what was done, in words.
	Unblock(ctx context.Context, key string) (string, error)
}

// Overview is the first page: the state of one consumer group.
type Overview struct {
	Group   string
	ReadAt  time.Time
	Members []Member
	// Partitions are the group's partitions of every topic it consumes
	// (source, retry tiers, parked), by topic and partition.
	Partitions []PartitionLag
	// Tiers are the retry tiers with messages waiting.
	Tiers        []TierWait
	HeldKeys     []HeldKey
	LastFailures []DeadLetter
	// Problems says what could not be read (a member's /status that did
	// not answer, a topic that is missing), one sentence each.
	Problems []string
}

// Member is one member of the group, as the broker describes it.
type Member struct {
	ID, ClientID, Host string
	// Assigned lists the member's partitions, "topic/partition".
	Assigned []string
	// Status is the member's /status when it answered (StatusURL), as
	// a short summary.
	StatusURL string
	Status    *MemberStatus
}

// MemberStatus is what the console shows of a member's /status.
type MemberStatus struct {
	Worker   string
	Joined   bool
	NotReady string
	InFlight int
	// LastErrors are the member's most recent failures, newest first.
	LastErrors []string
}

// PartitionLag is one partition the group consumes.
type PartitionLag struct {
	Topic     string
	Partition int
	// Committed is the group's committed offset (-1: none yet).
	Committed     int64
	HighWaterMark int64
	// Lag is the messages between Committed and HighWaterMark;
	// LagSeconds the age of the oldest of them (0 when none).
	Lag        int64
	LagSeconds float64
	Member     string
}

// TierWait is what waits in one retry tier.
type TierWait struct {
	Topic   string
	Waiting int64
	// NextDue is when the first waiting message is due (zero: unknown).
	NextDue time.Time
}

// HeldKey is a key whose events wait behind a head (ordered retries).
type HeldKey struct {
	Key   string
	Head  string // the head event's id
	Since time.Time
	State string
	// Queued is how many events wait behind the head.
	Queued int
}

// Filter selects dead letters; empty fields select everything.
type Filter struct {
	Type, Key, Source, ID, Reason, Group string
	Since, Until                         time.Time
	Skip, Limit                          int
}

// Selection is what a replay takes: one dead letter (Ref), or every one
// Filter selects (its Skip and Limit ignored).
type Selection struct {
	Ref    *LetterRef
	Filter Filter
}

// LetterRef names a dead letter by where it is.
type LetterRef struct {
	Topic     string
	Partition int
	Offset    int64
}

// Header is one Kafka header of a dead letter.
type Header struct {
	Key   string
	Value []byte
}

// DeadLetter is one dead letter: what the list shows, and for the one
// page also every header, the value and the event's record.
type DeadLetter struct {
	Ref     LetterRef
	Written time.Time
	Key     []byte
	// Type, Source and ID are the event's (empty when it did not decode).
	Type, Source, ID string
	Reason, Error    string
	Group            string
	Attempts         int
	Headers          []Header
	Value            []byte
	// Record is the event's idempotency record (nil when it has none or
	// the event did not decode); RecordRef names it.
	Record    *Record
	RecordRef *RecordRef
}

// ReplayReport is what a replay decided, and did unless it was a dry run.
type ReplayReport struct {
	DryRun bool
	// Verdicts has one line per dead letter, in the order they were
	// considered.
	Verdicts []ReplayVerdict
	// Replayed counts the dead letters republished (or, in a dry run,
	// that would be).
	Replayed int
	// Summary is the one sentence fleet dlq replay ends with.
	Summary string
}

// ReplayVerdict is the fate of one dead letter in a replay.
type ReplayVerdict struct {
	Ref     LetterRef
	Type    string
	ID      string
	Key     []byte
	To      string
	Verdict string
	Replay  bool
}

// RecordRef names an idempotency record: the event's group, message key,
// source and id (dedupe.Key).
type RecordRef struct {
	Group, Key, Source, ID string
}

// Record is an idempotency record.
type Record struct {
	Key           string
	State         string
	Fence         int64
	Attempts      int
	Fingerprint   string
	LeaseDeadline time.Time
	Result        []byte
	TTL           time.Duration
}

// ErrNotFound is what a Backend answers for a dead letter or record that
// is not there.
var ErrNotFound = errors.New("not found")

// AuditSink keeps the audit log's entries somewhere besides stderr (fleet
// console: a capped Redis stream).
type AuditSink interface {
	Append(ctx context.Context, e AuditEntry) error
}

// AuditEntry is one action taken in the console: who, what, when, and the
// outcome.
type AuditEntry struct {
	Time    time.Time `json:"time"`
	Who     string    `json:"who"`
	Role    string    `json:"role,omitempty"`
	Action  string    `json:"action"`
	Target  string    `json:"target,omitempty"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}
