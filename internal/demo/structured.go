package demo

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
)

// structuredEvent is the JSON object of a structured-mode twin.
type structuredEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// Structured returns the structured-mode twin of m, a binary-mode event as
// Event makes it: the same key, and a value that is the whole CloudEvent as
// JSON, with content-type application/cloudevents+json. Decoded, the twin is
// the same event as m. It fails on a header it has no attribute for (a
// CloudEvents extension) and on data that is not JSON.
func Structured(m kafka.Message) (kafka.Message, error) {
	var s structuredEvent
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case consumer.HeaderSpecVersion:
			s.SpecVersion = v
		case consumer.HeaderID:
			s.ID = v
		case consumer.HeaderSource:
			s.Source = v
		case consumer.HeaderType:
			s.Type = v
		case consumer.HeaderSubject:
			s.Subject = v
		case consumer.HeaderTime:
			s.Time = v
		case consumer.HeaderContentType:
			s.DataContentType = v
		default:
			return kafka.Message{}, fmt.Errorf("structured twin: no attribute for header %s", h.Key)
		}
	}
	if !strings.Contains(s.DataContentType, "json") || !json.Valid(m.Value) {
		return kafka.Message{}, fmt.Errorf("structured twin of %s: data is not JSON", s.ID)
	}
	s.Data = m.Value
	v, err := json.Marshal(s)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("structured twin of %s: %w", s.ID, err)
	}
	return kafka.Message{Key: m.Key, Value: v,
		Headers: []kafka.Header{{Key: consumer.HeaderContentType, Value: []byte(consumer.StructuredContentType)}}}, nil
}

// Mixed returns a copy of msgs in which a share (0 to 1) of the events are
// in structured mode (their Structured twin) and the others as they are.
// The choice goes by the event's id, so that every copy of an event (a
// duplicate) is in the same mode, as a producer that retries resends the
// same bytes; share 1 is every event, 0 none.
func Mixed(msgs []kafka.Message, share float64) ([]kafka.Message, error) {
	if !(share >= 0 && share <= 1) {
		return nil, fmt.Errorf("structured share %v: must be between 0 and 1", share)
	}
	limit := uint64(share * (1 << 32))
	out := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		out[i] = m
		h := fnv.New32a()
		_, _ = h.Write([]byte(Header(m, consumer.HeaderID)))
		if uint64(h.Sum32()) >= limit {
			continue
		}
		s, err := Structured(m)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}
