package consumer

import (
	"fmt"

	"github.com/fleetworks/fleet/handlers"
)

// Dead-letter reasons for messages over the input limits.
const (
	ReasonTooLarge       = "too_large"
	ReasonTooManyHeaders = "too_many_headers"
	ReasonTooDeep        = "too_deep"
	// ReasonTooLong is a message key, or an event id, source, type or
	// subject, over its length limit.
	ReasonTooLong = "too_long"
)

// checkLimits reports the first input limit m breaks: its size (key, value
// and headers), its header count, or the nesting depth of its JSON (the
// value when it is JSON: a structured event or JSON data). It reads the
// value once and allocates nothing.
func checkLimits(c *Config, m *messageView) (reason string, err error) {
	switch {
	case c.MaxKeyBytes > 0 && m.key > c.MaxKeyBytes:
		return ReasonTooLong, fmt.Errorf("message key of %d bytes, over the limit of %d", m.key, c.MaxKeyBytes)
	case c.MaxMessageBytes > 0 && m.size > int64(c.MaxMessageBytes):
		return ReasonTooLarge, fmt.Errorf("message of %d bytes, over the limit of %d", m.size, c.MaxMessageBytes)
	case c.MaxHeaders > 0 && m.headers > c.MaxHeaders:
		return ReasonTooManyHeaders, fmt.Errorf("%d headers, over the limit of %d", m.headers, c.MaxHeaders)
	case c.MaxJSONDepth > 0:
		if d := jsonDepth(m.value, c.MaxJSONDepth+1); d > c.MaxJSONDepth {
			return ReasonTooDeep, fmt.Errorf("JSON nested deeper than the limit of %d", c.MaxJSONDepth)
		}
	}
	return "", nil
}

// messageView is what the limits look at.
type messageView struct {
	size    int64
	key     int
	headers int
	value   []byte
}

// checkAttributes reports the first attribute of a decoded event over
// MaxAttributeBytes: id, source, type or subject. Each is kept in logs,
// /status and dead-letter listings, and the id and source name the event's
// idempotency record: what one event can make fleet hold is bounded.
func checkAttributes(c *Config, ev *handlers.Event) (reason string, err error) {
	if c.MaxAttributeBytes <= 0 {
		return "", nil
	}
	for _, a := range [...]struct{ name, v string }{{"id", ev.ID}, {"source", ev.Source}, {"type", ev.Type}, {"subject", ev.Subject}} {
		if len(a.v) > c.MaxAttributeBytes {
			return ReasonTooLong, fmt.Errorf("%s of %d bytes, over the limit of %d", a.name, len(a.v), c.MaxAttributeBytes)
		}
	}
	return "", nil
}

// maxShown caps what of an event's attributes fleet prints or serves.
const maxShown = 256

// clip cuts s to maxShown bytes for logs and /status, marking the cut.
func clip(s string) string {
	if len(s) <= maxShown {
		return s
	}
	return truncate(s, maxShown) + "…"
}

// jsonDepth returns the deepest nesting of objects and arrays in b, outside
// strings, stopping once it reaches stop. It does not validate b: anything
// that is not JSON is left to the decoders.
func jsonDepth(b []byte, stop int) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest >= stop {
					return deepest
				}
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}
