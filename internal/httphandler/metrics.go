package httphandler

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count the requests to each endpoint.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the HTTP handler metrics with reg:
// fleet_http_handler_requests_total{endpoint, code} (code: 2xx, 3xx, 4xx,
// 5xx, or error when no response came: a timeout, a refused connection, a
// lost lease) and fleet_http_handler_request_duration_seconds{endpoint}.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_http_handler_requests_total",
			Help: "Requests to HTTP handlers, by endpoint and status class (2xx, 3xx, 4xx, 5xx, or error when no response came).",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleet_http_handler_request_duration_seconds",
			Help:    "Duration of requests to HTTP handlers, from sending to the response body read, by endpoint.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// endpointMetrics are one endpoint's series, looked up once rather than
// per request.
type endpointMetrics struct {
	requests map[string]prometheus.Counter // by code class
	duration prometheus.Observer
}

// forEndpoint returns the series of the endpoint labelled label; nil
// without metrics.
func (m *Metrics) forEndpoint(label string) *endpointMetrics {
	if m == nil {
		return nil
	}
	e := &endpointMetrics{requests: map[string]prometheus.Counter{}, duration: m.duration.WithLabelValues(label)}
	for _, code := range []string{"2xx", "3xx", "4xx", "5xx", "error"} {
		e.requests[code] = m.requests.WithLabelValues(label, code)
	}
	return e
}

// codeClass is a status's class label.
func codeClass(status int) string {
	if status < 200 || status > 599 {
		return "error"
	}
	return string(rune('0'+status/100)) + "xx"
}
