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
)

// maxErrorMessage caps the error message header, in bytes.
const maxErrorMessage = 1024

// deadLetterMessage builds the dead letter of m. Headers fleet adds replace
// any left on the message by an earlier trip through a dead-letter topic.
func deadLetterMessage(m *kafka.Message, group, reason string, cause error, attempts int, first, last time.Time) kafka.Message {
	headers := make([]kafka.Header, 0, len(m.Headers)+9)
	for _, h := range m.Headers {
		if !strings.HasPrefix(h.Key, "fleet-") {
			headers = append(headers, h)
		}
	}
	msg := ""
	if cause != nil {
		msg = truncate(cause.Error(), maxErrorMessage)
	}
	add := func(k, v string) { headers = append(headers, kafka.Header{Key: k, Value: []byte(v)}) }
	add(HeaderOriginalTopic, m.Topic)
	add(HeaderOriginalPartition, strconv.Itoa(m.Partition))
	add(HeaderOriginalOffset, strconv.FormatInt(m.Offset, 10))
	add(HeaderConsumerGroup, group)
	add(HeaderErrorKind, reason)
	add(HeaderErrorMessage, msg)
	add(HeaderAttempts, strconv.Itoa(attempts))
	add(HeaderFirstFailure, first.UTC().Format(time.RFC3339Nano))
	add(HeaderLastFailure, last.UTC().Format(time.RFC3339Nano))
	return kafka.Message{
		Topic:   DeadLetterTopic(m.Topic),
		Key:     m.Key,
		Value:   m.Value,
		Headers: headers,
	}
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
