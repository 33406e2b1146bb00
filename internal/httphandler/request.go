package httphandler

import (
	"bytes"
	"context"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"

	"github.com/fleetworks/fleet/handlers"
)

// Headers fleet sets beside the CloudEvents attributes.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderFence          = "Fleet-Fence"
	HeaderAttempt        = "Fleet-Attempt"
	// HeaderKey is the event's aggregate (its Kafka message key, or its id
	// when it has none): the hash tag of every key the handler's effects
	// may write. Percent-encoded as the ce-* values are.
	HeaderKey = "Fleet-Key"
)

// extensionName is what the CloudEvents spec allows an attribute's name to
// be; an extension named otherwise is not sent.
var extensionName = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// newRequest is ev as a POST to u in the CloudEvents HTTP binding, binary
// mode: the attributes as ce-* headers (percent-encoded as the binding
// says), the data as the body with its content type, and fleet's headers.
func newRequest(ctx context.Context, u string, ev handlers.Event, tx *handlers.Tx) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(ev.Data))
	if err != nil {
		return nil, err
	}
	h := req.Header
	set := func(name, value string) {
		if value != "" {
			h[name] = []string{encodeValue(value)}
		}
	}
	set("Ce-Specversion", "1.0")
	set("Ce-Id", ev.ID)
	set("Ce-Source", ev.Source)
	set("Ce-Type", ev.Type)
	set("Ce-Subject", ev.Subject)
	if !ev.Time.IsZero() {
		set("Ce-Time", ev.Time.UTC().Format(time.RFC3339Nano))
	}
	for name, value := range ev.Extensions {
		if extensionName.MatchString(name) {
			set(http.CanonicalHeaderKey("ce-"+name), value)
		}
	}
	// The W3C trace context, for frameworks that read it from its own
	// headers rather than from the CloudEvents extension.
	parent, state := traceContext(ctx, ev)
	set("Traceparent", parent)
	set("Tracestate", state)
	if contentTypeAsIs(ev.DataContentType) {
		h["Content-Type"] = []string{ev.DataContentType}
	}
	set(HeaderIdempotencyKey, tx.IdempotencyKey())
	set(HeaderFence, strconv.FormatInt(tx.Fence(), 10))
	set(HeaderAttempt, strconv.Itoa(tx.Attempt()))
	set(HeaderKey, ev.Aggregate())
	return req, nil
}

// traceContext is the W3C trace context the request carries: the span in
// ctx when there is one (fleet run --tracing: the handler run's span, so
// that the endpoint's work is its child), the event's own otherwise. The
// ce-traceparent header stays the event's either way: it is the event's
// attribute.
func traceContext(ctx context.Context, ev handlers.Event) (traceparent, tracestate string) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ev.Extensions["traceparent"], ev.Extensions["tracestate"]
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// contentTypeAsIs reports whether a data content type goes in Content-Type
// as it is, as the binding wants it: a media type that parses, in visible
// ASCII with spaces and tabs. Another is left out rather than mangled.
func contentTypeAsIs(ct string) bool {
	if ct == "" || !httpguts.ValidHeaderFieldValue(ct) {
		return false
	}
	for i := 0; i < len(ct); i++ {
		if ct[i] >= 0x7f {
			return false
		}
	}
	_, _, err := mime.ParseMediaType(ct)
	return err == nil
}

// encodeValue percent-encodes what an HTTP header may not carry as it is,
// as the CloudEvents HTTP binding encodes attribute values: every byte
// outside printable ASCII, the space, '"' and '%'.
func encodeValue(s string) string {
	clean := true
	for i := 0; i < len(s) && clean; i++ {
		clean = s[i] > ' ' && s[i] < 0x7f && s[i] != '"' && s[i] != '%'
	}
	if clean {
		return s
	}
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '"' && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
