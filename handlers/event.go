package handlers

import "time"

// Event is a decoded CloudEvent, as a handler sees it. Handlers must treat it
// as read-only; Data and Extensions may be shared with the engine.
type Event struct {
	// ID and Source identify the event: a producer that retries resends the
	// same pair, and fleet runs the handler at most once for it.
	ID     string
	Source string
	// Type selects the handler, for example "payment.captured".
	Type string
	// Subject and Time are optional CloudEvents attributes; Time is zero when
	// the producer did not set it.
	Subject string
	Time    time.Time
	// DataContentType describes Data, for example "application/json".
	DataContentType string
	// Key is the Kafka message key: the aggregate (an account, an order). It
	// decides ordering: events with one key are handled one after another.
	Key string
	// Data is the event payload.
	Data []byte
	// Extensions holds CloudEvents extension attributes (binary-mode headers
	// ce_<name> other than the core attributes), keyed by attribute name.
	Extensions map[string]string
}
