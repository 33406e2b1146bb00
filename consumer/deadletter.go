package consumer

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
)

// Headers that fleet adds to a dead letter, as strings. The original key,
// value and headers are kept as they were.
const (
	HeaderOriginalTopic     = "fleet-original-topic"
	HeaderOriginalPartition = "fleet-original-partition"
	HeaderOriginalOffset    = "fleet-original-offset"
	HeaderConsumerGroup     = "fleet-consumer-group"
	HeaderErrorKind         = "fleet-error-kind"
	HeaderErrorMessage      = "fleet-error-message"
	HeaderAttempts          = "fleet-attempts"
	HeaderFirstFailure      = "fleet-first-failure-time"
	HeaderLastFailure       = "fleet-last-failure-time"
	// HeaderRetryTier is the retry tier a message was written to (on a
	// retry topic) or the last one it went through (on a dead letter).
	HeaderRetryTier = "fleet-retry-tier"
	// HeaderNotBefore is when a retry topic's consumer may run the event,
	// RFC 3339 with nanoseconds, UTC.
	HeaderNotBefore = "fleet-not-before"
	// HeaderDropped lists what a dead letter lost to fit the topic's
	// message limit: "value", then "headers" (the original ones), then
	// "key", comma-separated. The original message is at the original
	// topic, partition and offset, for as long as the topic keeps it.
	HeaderDropped = "fleet-dropped"
	// HeaderIdentity is the event's identity (handlers.IdempotencyKey of
	// the group, source and id), when it decoded: it survives a dead
	// letter's shrinking, and tells whether a message fetched back from the
	// original offset is the same event.
	HeaderIdentity = "fleet-identity"
)

// Dead-letter reasons, the values of the fleet-error-kind header (the
// limits add theirs, see limits.go).
const (
	ReasonDecode            = "decode"
	ReasonUnknownType       = "unknown_type"
	ReasonPermanent         = "permanent"
	ReasonConflict          = "conflict"
	ReasonAttemptsExhausted = "attempts_exhausted"
	ReasonInvalidEffect     = "invalid_effect"
	// ReasonInvalidRecord is an event the store cannot claim: its record key
	// holds something other than a record, or its keys span Redis Cluster
	// slots (a message key starting with '}').
	ReasonInvalidRecord = "invalid_record"
	// ReasonRetryable is the error kind on a retry topic: the handler failed
	// with a retryable error in every in-place attempt of a delivery.
	ReasonRetryable = "retryable"
	// ReasonRetryTooLarge is the error kind of an event that failed and
	// could not be written whole to its retry topic: it is dead-lettered
	// instead (a retry without its value could not run).
	ReasonRetryTooLarge = "retry_too_large"
)

// origin is where an event was first consumed: its source topic, partition
// and offset, and when it first failed (zero if it had not).
type origin struct {
	topic        string
	partition    int
	offset       int64
	firstFailure time.Time
	tier         int
}

// originOf reads m's origin: m itself on a source topic; the headers the
// engine wrote on a retry topic.
func originOf(m *kafka.Message, r route) origin {
	o := origin{topic: r.source, partition: m.Partition, offset: m.Offset, tier: r.tier}
	if !r.fleets() {
		return o
	}
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderOriginalTopic:
			if v == r.source {
				o.topic = v
			}
		case HeaderOriginalPartition:
			if n, err := strconv.Atoi(v); err == nil {
				o.partition = n
			}
		case HeaderOriginalOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				o.offset = n
			}
		case HeaderFirstFailure:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				o.firstFailure = t
			}
		}
	}
	return o
}

// maxErrorMessage caps the error message header, in bytes.
const maxErrorMessage = 1024

// failure describes why an event leaves its partition for a retry or
// dead-letter topic.
type failure struct {
	group       string
	identity    string
	reason      string
	cause       error
	attempts    int
	first, last time.Time
}

// deadLetterMessage builds the dead letter of m, consumed from a topic with
// route r. Headers fleet adds replace any left on the message by an earlier
// trip through a retry or dead-letter topic; the origin stays the first.
func deadLetterMessage(m *kafka.Message, r route, f failure) kafka.Message {
	o := originOf(m, r)
	return failureMessage(m, DeadLetterTopic(o.topic), o, f, nil)
}

// retryMessage builds the message of m for retry tier n, to run no earlier
// than notBefore.
func retryMessage(m *kafka.Message, r route, f failure, n int, notBefore time.Time) kafka.Message {
	o := originOf(m, r)
	o.tier = n
	return failureMessage(m, RetryTopic(o.topic, n), o, f, &notBefore)
}

func failureMessage(m *kafka.Message, topic string, o origin, f failure, notBefore *time.Time) kafka.Message {
	headers := make([]kafka.Header, 0, len(m.Headers)+12)
	for _, h := range m.Headers {
		if !isFleetHeader(h.Key) {
			headers = append(headers, h)
		}
	}
	msg := ""
	if f.cause != nil {
		msg = truncate(f.cause.Error(), maxErrorMessage)
	}
	first := f.first
	if !o.firstFailure.IsZero() && o.firstFailure.Before(first) {
		first = o.firstFailure
	}
	add := func(k, v string) { headers = append(headers, kafka.Header{Key: k, Value: []byte(v)}) }
	add(HeaderOriginalTopic, o.topic)
	add(HeaderOriginalPartition, strconv.Itoa(o.partition))
	add(HeaderOriginalOffset, strconv.FormatInt(o.offset, 10))
	add(HeaderConsumerGroup, f.group)
	add(HeaderErrorKind, f.reason)
	add(HeaderErrorMessage, msg)
	add(HeaderAttempts, strconv.Itoa(f.attempts))
	add(HeaderFirstFailure, first.UTC().Format(time.RFC3339Nano))
	add(HeaderLastFailure, f.last.UTC().Format(time.RFC3339Nano))
	add(HeaderRetryTier, strconv.Itoa(o.tier))
	if f.identity != "" {
		add(HeaderIdentity, f.identity)
	}
	if notBefore != nil {
		add(HeaderNotBefore, notBefore.UTC().Format(time.RFC3339Nano))
	}
	return kafka.Message{
		Topic:     topic,
		Partition: o.partition,
		Key:       m.Key,
		Value:     m.Value,
		Headers:   headers,
	}
}

// isFleetHeader reports whether a header name is fleet's own, whatever its
// case: fleet drops every such header a message brings before it adds its
// own, so that a producer cannot pass one off as fleet's.
func isFleetHeader(name string) bool {
	return len(name) >= len("fleet-") && strings.EqualFold(name[:len("fleet-")], "fleet-")
}

// shrink returns m with the next part a too large dead letter can lose, and
// false when nothing is left to drop: first its value, then its original
// headers (fleet's own stay), then its key. HeaderDropped says what is gone.
func shrink(m kafka.Message) (kafka.Message, bool) {
	dropped := fleetHeader(m.Headers, HeaderDropped)
	var next string
	switch {
	case len(m.Value) > 0:
		m.Value, next = nil, "value"
	case hasOriginalHeaders(m.Headers):
		m.Headers, next = fleetHeaders(m.Headers), "headers"
	case len(m.Key) > 0:
		m.Key, next = nil, "key"
	default:
		return m, false
	}
	if dropped != "" {
		next = dropped + "," + next
	}
	hs := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if h.Key != HeaderDropped {
			hs = append(hs, h)
		}
	}
	m.Headers = append(hs, kafka.Header{Key: HeaderDropped, Value: []byte(next)})
	return m, true
}

func hasOriginalHeaders(hs []kafka.Header) bool {
	for _, h := range hs {
		if !isFleetHeader(h.Key) {
			return true
		}
	}
	return false
}

func fleetHeaders(hs []kafka.Header) []kafka.Header {
	out := make([]kafka.Header, 0, len(hs))
	for _, h := range hs {
		if isFleetHeader(h.Key) {
			out = append(out, h)
		}
	}
	return out
}

// fleetHeader returns the value of one of fleet's own headers, matched
// exactly: fleet writes them in lower case, and drops any other spelling a
// message brings.
func fleetHeader(hs []kafka.Header, name string) string {
	for _, h := range hs {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
