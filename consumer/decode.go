package consumer

import (
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/handlers"
)

// StructuredContentType marks a structured-mode CloudEvent: the Kafka value is
// the whole event as JSON.
const StructuredContentType = "application/cloudevents+json"

// Binary-mode header names of the CloudEvents Kafka protocol binding.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"
)

// DecodeError explains why a Kafka message is not a CloudEvent fleet accepts.
// Such messages go to the dead-letter topic with the reason.
type DecodeError struct {
	Reason string
}

func (e *DecodeError) Error() string { return "decode cloudevent: " + e.Reason }

func decodeErrorf(format string, args ...any) error {
	return &DecodeError{Reason: fmt.Sprintf(format, args...)}
}

// Decode turns a Kafka message into the event a handler sees, in binary or
// structured mode. It requires specversion 1.0 and non-empty id, source and
// type. The event's Key is the message key.
func Decode(msg *kafka.Message) (handlers.Event, error) {
	contentType := header(msg.Headers, HeaderContentType)
	if isStructured(contentType) {
		return decodeStructured(msg)
	}
	return decodeBinary(msg, contentType)
}

func isStructured(contentType string) bool {
	switch {
	case contentType == StructuredContentType:
		return true // what ParseMediaType would say, without its map
	case !strings.HasPrefix(contentType, StructuredContentType):
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == StructuredContentType
}

func decodeBinary(msg *kafka.Message, contentType string) (handlers.Event, error) {
	ev := handlers.Event{Key: string(msg.Key), Data: msg.Value, DataContentType: contentType}
	var specversion, timeAttr string
	for _, h := range msg.Headers {
		name, ok := strings.CutPrefix(h.Key, "ce_")
		if !ok {
			continue
		}
		v := string(h.Value)
		switch name {
		case "specversion":
			specversion = v
		case "id":
			ev.ID = v
		case "source":
			ev.Source = v
		case "type":
			ev.Type = v
		case "subject":
			ev.Subject = v
		case "time":
			timeAttr = v
		default:
			if ev.Extensions == nil {
				ev.Extensions = make(map[string]string)
			}
			ev.Extensions[name] = v
		}
	}
	if specversion == "" {
		return ev, decodeErrorf("missing header %s (binary mode) and content-type is not %s", HeaderSpecVersion, StructuredContentType)
	}
	if err := check(&ev, specversion, timeAttr); err != nil {
		return ev, err
	}
	return ev, nil
}

func check(ev *handlers.Event, specversion, timeAttr string) error {
	switch {
	case specversion != "1.0":
		return decodeErrorf("specversion %q: only 1.0 is supported", clip(specversion))
	case ev.ID == "":
		return decodeErrorf("missing id")
	case ev.Source == "":
		return decodeErrorf("missing source")
	case ev.Type == "":
		return decodeErrorf("missing type")
	}
	if timeAttr != "" {
		t, err := time.Parse(time.RFC3339Nano, timeAttr)
		if err != nil {
			return decodeErrorf("time %q is not RFC 3339", clip(timeAttr))
		}
		ev.Time = t
	}
	return nil
}

func header(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}
