package consumer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
)

// Config holds the engine's settings. Start from [DefaultConfig].
type Config struct {
	// Brokers are the Kafka bootstrap addresses, host:port.
	Brokers []string
	// Topics are the source topics. Each has a dead-letter topic <topic>.dlq.
	Topics []string
	// Group is the Kafka consumer group; it also scopes idempotency records.
	Group string
	// Dialer connects to Kafka (TLS, SASL); nil uses kafka-go's default.
	Dialer *kafka.Dialer

	// Lanes is the number of events a partition runs at once: events with
	// one key (the message key, or the id when there is none) run one after
	// another in offset order, each after the one before it finished;
	// different keys run in parallel on any free lane.
	Lanes int
	// MaxInFlight caps fetched-but-unfinished events per partition.
	MaxInFlight int
	// WorkerMaxInFlight caps fetched-but-unfinished events in the whole
	// worker, over all its partitions: a worker that takes over many
	// partitions with a backlog (its crashed peers') would otherwise hold
	// a batch fetched ahead and MaxInFlight events, with up to Lanes
	// goroutines, for each of them at once. A partition's fetcher waits
	// for room before it hands over its next message; while the cap is
	// reached, a partition whose events are slow holds up the others. 0:
	// no cap.
	WorkerMaxInFlight int
	// MaxInFlightBytes caps the bytes (keys, values, headers) of a
	// partition's messages from fetch to finish, those queued for the next
	// batch included; a single larger message still goes through, alone.
	MaxInFlightBytes int64
	// BatchSize caps the events claimed in one store round trip.
	BatchSize int

	// Input limits: a message over one of them goes to the dead-letter
	// topic (reasons too_large, too_many_headers, too_deep, too_long)
	// without being decoded further. 0 turns a limit off.
	//
	// MaxMessageBytes caps a message's key, value and headers together.
	MaxMessageBytes int
	// MaxHeaders caps the number of headers of a message.
	MaxHeaders int
	// MaxJSONDepth caps the nesting of objects and arrays in a JSON value.
	MaxJSONDepth int
	// MaxKeyBytes caps the message key, and MaxAttributeBytes each of an
	// event's id, source, type and subject (reason too_long).
	MaxKeyBytes       int
	MaxAttributeBytes int

	// MaxAttempts is the attempt budget of one event, kept in its idempotency
	// record across restarts, rebalances and retry tiers; past it the event
	// is dead-lettered.
	MaxAttempts int
	// InPlaceAttempts is how many attempts one delivery of an event gets,
	// with backoff between them, before the event moves on to the next
	// retry topic (or to the dead-letter topic after the last one).
	InPlaceAttempts int
	// RetryDelays are the retry tiers: an event that failed its in-place
	// attempts on a source topic goes to <topic>.retry.1, which runs it
	// again RetryDelays[0] later, then to <topic>.retry.2, and so on; after
	// the last tier it goes to <topic>.dlq. Empty: no retry topics, straight
	// to the dead-letter topic.
	RetryDelays []time.Duration
	// RetryBackoff and MaxRetryBackoff bound the exponential backoff (with
	// jitter) between in-place attempts.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// HandlerTimeout bounds one attempt of a handler; 0 means no bound.
	HandlerTimeout time.Duration
	// Lease is the claim lease; it is extended every Lease/3 while a handler
	// runs. It must match the store's lease.
	Lease time.Duration

	// SessionTimeout and HeartbeatInterval are the consumer group's.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance.
	RebalanceTimeout time.Duration
	// DrainTimeout bounds the drain on revocation or shutdown: in-flight
	// handlers get this long to finish before they are cancelled and their
	// claims released. It must be well under SessionTimeout.
	DrainTimeout time.Duration
	// CommitInterval is how often watermarks are committed.
	CommitInterval time.Duration
	// MaxWait is how long a fetch waits on the broker for new data.
	MaxWait time.Duration
	// StartOffset is where a partition without a committed offset starts:
	// kafka.FirstOffset (the default) or kafka.LastOffset.
	StartOffset int64

	// RateLimiter, when set, holds fleet-wide limits per event type: a
	// handler runs only once it grants the run (see [RateLimiter]).
	RateLimiter RateLimiter

	// RetryOrder is how a key's events keep their order through the retry
	// tiers (docs/ordering.md): [OrderKey], the default, parks the events
	// behind a key's event that waits in a tier or is held, and releases
	// them in order through <topic>.parked; [OrderNone] lets them run
	// (they then overtake it). Gates made under key are served either way.
	RetryOrder string
	// OnDeadLetter is what a dead-lettered head does to the events parked
	// behind it: [DeadLetterContinue] (the default) releases the next one;
	// [DeadLetterHold] holds the key until an operator unblocks it (fleet
	// keys unblock) or the head is replayed and succeeds.
	OnDeadLetter string
	// MaxParkedPerKey bounds the events parked behind one head; past it,
	// an event is dead-lettered (reason parked_overflow). 0: no bound.
	MaxParkedPerKey int
	// GateScanInterval is how often a worker reads its group's gates for
	// /status and the fleet_order_* gauges.
	GateScanInterval time.Duration
	// OnFinish, when set, is called for every finished event (processed,
	// duplicate or dead-lettered) with its message and outcome, on the
	// engine's goroutine: it must return quickly, and msg is valid only
	// during the call. Benchmarks use it.
	OnFinish func(msg *kafka.Message, outcome string)
	// TracerProvider, when set, traces every event (tracing.go): a span
	// per event, a child of the trace context the event carries, with
	// child spans for its claims, handler runs and completions. nil: no
	// tracing, and next to no cost per event.
	TracerProvider trace.TracerProvider
}

// DefaultConfig returns the defaults; Brokers, Topics and Group stay empty.
func DefaultConfig() Config {
	return Config{
		Lanes:             64,
		MaxInFlight:       256,
		WorkerMaxInFlight: 4096,
		MaxInFlightBytes:  4 << 20,
		BatchSize:         256,
		MaxMessageBytes:   1 << 20,
		MaxHeaders:        64,
		MaxJSONDepth:      32,
		MaxKeyBytes:       256,
		MaxAttributeBytes: 256,
		MaxAttempts:       12,
		InPlaceAttempts:   3,
		RetryDelays:       []time.Duration{time.Second, 10 * time.Second, time.Minute},
		RetryBackoff:      100 * time.Millisecond,
		MaxRetryBackoff:   5 * time.Second,
		HandlerTimeout:    30 * time.Second,
		Lease:             30 * time.Second,
		SessionTimeout:    30 * time.Second,
		HeartbeatInterval: 3 * time.Second,
		RebalanceTimeout:  30 * time.Second,
		DrainTimeout:      10 * time.Second,
		CommitInterval:    time.Second,
		MaxWait:           250 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,
		RetryOrder:        OrderKey,
		OnDeadLetter:      DeadLetterContinue,
		MaxParkedPerKey:   10000,
		GateScanInterval:  15 * time.Second,
	}
}

// Validate reports every setting the engine cannot run with, joined.
func (c Config) Validate() error {
	var p problems
	c.checkSubscription(&p)
	c.checkPipeline(&p)
	c.checkRetries(&p)
	c.checkGroupTiming(&p)
	return errors.Join(p...)
}

// problems collects what is wrong with a configuration.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// checkSubscription checks what the engine consumes: brokers, topics, group.
func (c Config) checkSubscription(p *problems) {
	if len(c.Brokers) == 0 {
		p.add("brokers: at least one is required")
	}
	for _, b := range c.Brokers {
		if b == "" {
			p.add("brokers: empty address")
		}
	}
	if len(c.Topics) == 0 {
		p.add("topics: at least one is required")
	}
	seen := map[string]int{}
	for _, t := range c.Topics {
		switch {
		case t == "":
			p.add("topics: empty topic name")
		case seen[t] == 1:
			p.add("topics: %q is listed twice or more", t)
		}
		seen[t]++
	}
	if c.Group == "" {
		p.add("group: required")
	}
	for _, t := range c.Topics {
		if _, _, ok := parseRetryTopic(t); ok || strings.HasSuffix(t, ".dlq") || strings.HasSuffix(t, parkedSuffix) {
			p.add("topics: %q is a retry, parked or dead-letter topic; list its source topic instead", t)
		}
	}
}

// checkPipeline checks the pipeline's sizes and the input limits.
func (c Config) checkPipeline(p *problems) {
	if c.Lanes < 1 || c.Lanes > 4096 {
		p.add("lanes %d: must be between 1 and 4096", c.Lanes)
	}
	if c.MaxInFlight < 1 {
		p.add("max in flight %d: must be at least 1", c.MaxInFlight)
	}
	if c.WorkerMaxInFlight < 0 {
		p.add("worker max in flight %d: must not be negative (0: no cap)", c.WorkerMaxInFlight)
	}
	if c.MaxInFlightBytes < 1 {
		p.add("max in flight bytes %d: must be at least 1", c.MaxInFlightBytes)
	}
	if c.BatchSize < 1 {
		p.add("batch size %d: must be at least 1", c.BatchSize)
	}
	if c.MaxMessageBytes < 0 || c.MaxHeaders < 0 || c.MaxJSONDepth < 0 || c.MaxKeyBytes < 0 || c.MaxAttributeBytes < 0 {
		p.add("input limits must not be negative (0: no limit)")
	}
}

// checkRetries checks the attempts, the retry tiers and the handler's run.
func (c Config) checkRetries(p *problems) {
	if c.MaxAttempts < 1 {
		p.add("attempts %d: must be at least 1", c.MaxAttempts)
	}
	if c.InPlaceAttempts < 1 {
		p.add("in-place attempts %d: must be at least 1", c.InPlaceAttempts)
	}
	for i, d := range c.RetryDelays {
		if d <= 0 {
			p.add("retry delay %d (%v): must be positive", i+1, d)
		}
	}
	if len(c.RetryDelays) > 32 {
		p.add("retry delays: %d tiers, at most 32", len(c.RetryDelays))
	}
	if c.RetryBackoff <= 0 || c.MaxRetryBackoff < c.RetryBackoff {
		p.add("retry backoff %v..%v: must be positive and ordered", c.RetryBackoff, c.MaxRetryBackoff)
	}
	if c.HandlerTimeout < 0 {
		p.add("handler timeout %v: must not be negative", c.HandlerTimeout)
	}
	if err := dedupe.CheckLease(c.Lease); err != nil {
		*p = append(*p, err)
	}
	if c.RetryOrder != OrderKey && c.RetryOrder != OrderNone {
		p.add("retry order %q: must be %q or %q", c.RetryOrder, OrderKey, OrderNone)
	}
	if c.OnDeadLetter != DeadLetterContinue && c.OnDeadLetter != DeadLetterHold {
		p.add("on dead letter %q: must be %q or %q", c.OnDeadLetter, DeadLetterContinue, DeadLetterHold)
	}
	if c.GateScanInterval <= 0 {
		p.add("gate scan interval %v: must be positive", c.GateScanInterval)
	}
	if c.MaxParkedPerKey < 0 {
		p.add("max parked per key %d: must not be negative (0: no bound)", c.MaxParkedPerKey)
	}
}

// checkGroupTiming checks the consumer group's timing and the commits.
func (c Config) checkGroupTiming(p *problems) {
	if c.SessionTimeout < time.Second {
		p.add("session timeout %v: must be at least 1s", c.SessionTimeout)
	}
	if c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.SessionTimeout/2 {
		p.add("heartbeat interval %v: must be positive and under half the session timeout (%v)", c.HeartbeatInterval, c.SessionTimeout)
	}
	if c.RebalanceTimeout < time.Second {
		p.add("rebalance timeout %v: must be at least 1s", c.RebalanceTimeout)
	}
	if c.DrainTimeout <= 0 || c.DrainTimeout > c.SessionTimeout*2/3 {
		p.add("drain timeout %v: must be positive and at most two thirds of the session timeout (%v)", c.DrainTimeout, c.SessionTimeout)
	}
	if c.CommitInterval <= 0 {
		p.add("commit interval %v: must be positive", c.CommitInterval)
	}
	if c.MaxWait <= 0 {
		p.add("max wait %v: must be positive", c.MaxWait)
	}
	if c.StartOffset != kafka.FirstOffset && c.StartOffset != kafka.LastOffset {
		p.add("start offset %d: must be kafka.FirstOffset or kafka.LastOffset", c.StartOffset)
	}
}

// DeadLetterTopic is the dead-letter topic of a source topic.
func DeadLetterTopic(topic string) string { return topic + ".dlq" }

// ParkedTopic is the topic through which a source topic's parked events
// are released, in order, when the event they waited behind ends
// (docs/ordering.md).
func ParkedTopic(topic string) string { return topic + parkedSuffix }

const parkedSuffix = ".parked"

// RetryTopic is retry tier n (1-based) of a source topic.
func RetryTopic(topic string, n int) string { return topic + ".retry." + strconv.Itoa(n) }

// parseRetryTopic splits a retry topic into its source topic and tier.
func parseRetryTopic(t string) (source string, tier int, ok bool) {
	i := strings.LastIndex(t, ".retry.")
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(t[i+len(".retry."):])
	if err != nil || n < 1 || strconv.Itoa(n) != t[i+len(".retry."):] {
		return "", 0, false
	}
	return t[:i], n, true
}

// route is what the engine knows of a topic it consumes: the source topic
// whose events it carries, and its retry tier (0 for the source itself and
// for its parked topic, whose events run as if read from the source).
type route struct {
	source string
	tier   int
	parked bool
}

// fleets reports whether the route's messages were written by fleet (a
// retry tier or the parked topic): they carry fleet's headers and a
// consumer group.
func (r route) fleets() bool { return r.tier > 0 || r.parked }
