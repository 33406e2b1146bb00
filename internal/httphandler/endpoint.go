// Package httphandler runs handlers over HTTP: a handlers.Handler that POSTs
// each event to an endpoint in the CloudEvents HTTP binding (binary mode)
// and turns the response into the run's outcome, its staged effects and
// its result, so that a handler in any language gets what a Go handler
// gets: effects applied atomically with the done-mark, retries, dead
// letters, fencing tokens.
//
// One file per part: endpoint.go parses `--http-handler PATTERN=URL`,
// request.go builds the request, response.go decides on the response (a
// pure function), effects.go reads the effects format, client.go the
// connections and their TLS, handler.go puts them together, metrics.go
// counts per endpoint.
package httphandler

import (
	"fmt"
	"net/url"
	"strings"
)

// Endpoint is one `--http-handler PATTERN=URL`.
type Endpoint struct {
	// Pattern is an event type, or a prefix ending in "*"
	// (handlers.Router.RegisterPattern).
	Pattern string
	// URL is where the events go: http or https, with a host, without
	// credentials or a fragment.
	URL *url.URL
}

// ParseEndpoint reads "PATTERN=URL".
func ParseEndpoint(spec string) (Endpoint, error) {
	pattern, raw, ok := strings.Cut(strings.TrimSpace(spec), "=")
	pattern, raw = strings.TrimSpace(pattern), strings.TrimSpace(raw)
	if !ok || pattern == "" || raw == "" {
		return Endpoint{}, fmt.Errorf("http handler %q: want TYPE_PATTERN=URL, such as 'inventory.*=http://localhost:8081/events' (a comma separates routes: write one in a URL as %%2C)", spec)
	}
	if i := strings.Index(pattern, "*"); i >= 0 && i != len(pattern)-1 {
		return Endpoint{}, fmt.Errorf("http handler %q: a pattern is an event type, or a prefix ending in one \"*\"", spec)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return Endpoint{}, fmt.Errorf("http handler %q: %w", pattern, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return Endpoint{}, fmt.Errorf("http handler %q: URL scheme %q: want http or https", pattern, u.Scheme)
	case u.Host == "":
		return Endpoint{}, fmt.Errorf("http handler %q: URL without a host", pattern)
	case u.User != nil:
		return Endpoint{}, fmt.Errorf("http handler %q: credentials in the URL would be logged; use --http-handler-token-file or FLEET_HTTP_HANDLER_TOKEN", pattern)
	case u.Fragment != "":
		return Endpoint{}, fmt.Errorf("http handler %q: URL with a fragment", pattern)
	}
	return Endpoint{Pattern: pattern, URL: u}, nil
}

// label names the endpoint in metrics and logs: its URL without the query,
// which may carry what is not for dashboards.
func (e Endpoint) label() string {
	u := *e.URL
	u.RawQuery = ""
	return u.String()
}
