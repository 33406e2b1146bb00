package httphandler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fleetworks/fleet/handlers"
)

// Handler runs events on one endpoint. It is safe for concurrent use.
type Handler struct {
	endpoint Endpoint
	url      string
	label    string
	client   *http.Client
	opts     Options
	metrics  *endpointMetrics
}

// New returns the handler of endpoint e; m may be shared by every
// endpoint's handler.
func New(e Endpoint, o Options, m *Metrics) (*Handler, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	client, err := newClient(o)
	if err != nil {
		return nil, err
	}
	label := e.label()
	return &Handler{endpoint: e, url: e.URL.String(), label: label, client: client, opts: o, metrics: m.forEndpoint(label)}, nil
}

// Register routes every endpoint's pattern to its handler on r. A type that
// has a Go handler keeps it: a pattern routes the types nobody else
// handles, and a pattern that names such a type exactly, or that would
// take over part of a Go pattern's types, is refused.
func Register(r *handlers.Router, endpoints []Endpoint, o Options, m *Metrics) error {
	// Judged against the router as the Go domains left it, before any
	// HTTP route.
	goPatterns, goTypes := r.Patterns(), r.Types()
	for _, e := range endpoints {
		if p, ok := overlaps(e.Pattern, goPatterns); ok {
			return fmt.Errorf("--http-handler %s: would take over types of the pattern %s, which a Go domain handles", e.Pattern, p)
		}
		if slices.Contains(goTypes, e.Pattern) {
			return fmt.Errorf("--http-handler %s: this type has a Go handler, which keeps it; route another type, or a pattern, to the endpoint", e.Pattern)
		}
		h, err := New(e, o, m)
		if err != nil {
			return err
		}
		if err := r.RegisterPattern(e.Pattern, h); err != nil {
			return fmt.Errorf("--http-handler %s: %w", e.Pattern, err)
		}
	}
	return nil
}

// overlaps reports the first Go pattern whose types pattern would take
// over: one that pattern is longer than and lies within ("ledger.account*"
// within "ledger.*"; a type is a pattern without "*").
func overlaps(pattern string, goPatterns []string) (string, bool) {
	prefix, _ := strings.CutSuffix(pattern, "*")
	for _, g := range goPatterns {
		gp := strings.TrimSuffix(g, "*")
		if strings.HasPrefix(prefix, gp) && prefix != gp {
			return g, true
		}
	}
	return "", false
}

// Handle POSTs ev to the endpoint and turns the response into the run's
// outcome: nil with the effects and result of a 2xx staged on tx, a
// permanent error, or a retryable one (with the Retry-After asked for).
func (h *Handler) Handle(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
	req, err := newRequest(ctx, h.url, ev, tx)
	if err != nil {
		return handlers.Permanent(fmt.Errorf("http handler %s: %w", h.label, err))
	}
	if h.opts.AuthValue != "" {
		req.Header.Set(h.opts.AuthHeader, h.opts.AuthValue)
	}
	start := time.Now()
	resp, err := h.client.Do(req)
	if err != nil {
		h.observe("error", start)
		return fmt.Errorf("http handler %s: %w", h.label, unwrapURLError(err))
	}
	body, readErr := h.read(resp)
	h.observe(codeClass(resp.StatusCode), start)
	if readErr != nil && !errors.Is(readErr, errTooLarge) {
		return fmt.Errorf("http handler %s: reading the response: %w", h.label, readErr)
	}
	return h.outcome(resp, body, readErr, tx)
}

// outcome is what a response makes of the run.
func (h *Handler) outcome(resp *http.Response, body []byte, readErr error, tx *handlers.Tx) error {
	status := fmt.Sprintf("http handler %s answered %s", h.label, resp.Status)
	switch classify(resp.StatusCode) {
	case succeeded:
		if readErr != nil {
			return fmt.Errorf("%w: %s with a body over %d bytes (--http-handler-max-response-bytes)", handlers.ErrInvalidEffect, status, h.opts.MaxResponseBytes)
		}
		if err := readReply(body, tx); err != nil {
			return fmt.Errorf("%s: %w", status, err)
		}
		return nil
	case failedForNow:
		return handlers.RetryAfter(fmt.Errorf("%s: %s", status, h.snippet(body)), retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	}
	return handlers.Permanent(fmt.Errorf("%s: %s", status, h.snippet(body)))
}

// snippet is the start of body for an error, without the credential (the
// header's value whole, and a bearer's token alone).
func (h *Handler) snippet(body []byte) string {
	token, _ := strings.CutPrefix(h.opts.AuthValue, "Bearer ")
	return bodySnippet(body, h.opts.AuthValue, token)
}

var errTooLarge = errors.New("response body too large")

// read reads the body up to the cap, and closes it. A body over the cap is
// errTooLarge, with its first bytes; the rest is not read (the connection
// is then not reused).
func (h *Handler) read(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.opts.MaxResponseBytes+1))
	if err == nil && int64(len(body)) > h.opts.MaxResponseBytes {
		return body[:h.opts.MaxResponseBytes], errTooLarge
	}
	return body, err
}

func (h *Handler) observe(code string, start time.Time) {
	if h.metrics == nil {
		return
	}
	h.metrics.requests[code].Inc()
	h.metrics.duration.Observe(time.Since(start).Seconds())
}

// unwrapURLError drops net/http's "Post <url>:" wrapper (the endpoint is
// already named) but keeps the cause, so that a deadline stays a deadline.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
