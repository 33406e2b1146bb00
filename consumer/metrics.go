package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a finished event, the values of the outcome label.
const (
	OutcomeProcessed    = "processed"
	OutcomeDuplicate    = "duplicate"
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeConflict: the id was reused with another payload; the event is
	// dead-lettered (reason conflict) but counted apart.
	OutcomeConflict = "conflict"
	// OutcomeRetried: written to the next retry topic.
	OutcomeRetried = "retried"
	// OutcomeOtherGroup: a retry-topic message of another consumer group.
	OutcomeOtherGroup = "other_group"
)

// Metrics are the engine's Prometheus metrics. Labels are bounded: topics,
// partitions, registered event types (others count as "unknown"), outcomes
// and reasons; never keys or ids.
type Metrics struct {
	received     *prometheus.CounterVec
	finished     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	retryTopics  *prometheus.CounterVec
	hung         prometheus.Counter
	fetchErrors  *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	handlerTime  *prometheus.HistogramVec
	latency      prometheus.Histogram
	leaseLost    prometheus.Counter
	storeTime    *prometheus.HistogramVec
	storeErrors  *prometheus.CounterVec
	busy         prometheus.Counter
	takeovers    prometheus.Counter
	assigned     prometheus.Gauge
	rebalances   prometheus.Counter
	inFlight     prometheus.Gauge
	lag          *prometheus.GaugeVec
	commits      *prometheus.CounterVec
	storeUp      prometheus.Gauge
	groupJoined  prometheus.Gauge
	publishError *prometheus.CounterVec
	order        orderMetrics
	gates        gateGauges

	// reg takes the engine's scrape-time metrics.
	reg prometheus.Registerer
}

// NewMetrics creates the engine's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	r := &registering{reg: reg}
	return &Metrics{
		reg: reg,
		received: counterVec(r, "fleet_consumer_events_received_total",
			"Kafka messages fetched, by topic and event type (unknown when undecodable or unregistered).", "topic", "type"),
		finished: counterVec(r, "fleet_consumer_events_finished_total",
			"Events finished, by outcome: processed, duplicate, conflict (dead-lettered), retried (to a retry topic), dead_lettered, parked (behind an earlier event of its key) or other_group (another group's retry).", "topic", "type", "outcome"),
		retries: counterVec(r, "fleet_consumer_retries_total",
			"In-place retries of events whose handler failed with a retryable error, by reason: error, or timeout (the handler timeout passed).", "topic", "type", "reason"),
		deadLetters: counterVec(r, "fleet_consumer_dead_letters_total",
			"Events written to a dead-letter topic, by reason.", "topic", "reason"),
		retryTopics: counterVec(r, "fleet_consumer_retry_topic_events_total",
			"Events written to a retry topic after their in-place attempts failed, by source topic and tier.", "topic", "tier"),
		hung: counter(r, "fleet_consumer_hung_handlers_total",
			"Handlers left running at the end of a drain because they ignored their cancelled context."),
		fetchErrors: counterVec(r, "fleet_consumer_fetch_errors_total",
			"Fetches from Kafka that failed and are retried with backoff, by topic.", "topic"),
		throttled: counterVec(r, "fleet_handler_throttled_seconds_total",
			"Time handler runs waited for the fleet-wide rate limit of their event type.", "type"),
		handlerTime: histogramVec(r, "fleet_handler_duration_seconds",
			"Duration of one handler attempt.", "type"),
		latency: histogram(r, "fleet_consumer_event_latency_seconds",
			"Time from the Kafka message timestamp to the event being finished."),
		leaseLost: counter(r, "fleet_lease_lost_total",
			"Runs whose lease was lost while the handler ran: an external effect may have happened twice."),
		storeTime: histogramVec(r, "fleet_store_duration_seconds",
			"Duration of idempotency store calls, by operation.", "operation"),
		storeErrors: counterVec(r, "fleet_store_errors_total",
			"Idempotency store calls that failed, by operation.", "operation"),
		busy: counter(r, "fleet_store_claims_busy_total",
			"Claims that found the event held by another live owner."),
		takeovers: counter(r, "fleet_store_takeovers_total",
			"Claims that took an event over from an owner whose lease expired."),
		assigned: gauge(r, "fleet_consumer_partitions_assigned",
			"Partitions assigned to this worker."),
		rebalances: counter(r, "fleet_consumer_rebalances_total",
			"Consumer group generations joined."),
		inFlight: gauge(r, "fleet_consumer_in_flight_events",
			"Events fetched and not yet finished."),
		lag: gaugeVec(r, "fleet_consumer_lag_offsets",
			"Messages behind the partition's high-water mark, as of the last fetch.", "topic", "partition"),
		commits: counterVec(r, "fleet_consumer_commits_total",
			"Offset commits, by result.", "result"),
		storeUp: gauge(r, "fleet_store_up",
			"1 when the last idempotency store call succeeded."),
		groupJoined: gauge(r, "fleet_consumer_group_joined",
			"1 while this worker is a member of a consumer group generation."),
		publishError: counterVec(r, "fleet_consumer_publish_errors_total",
			"Failed writes to dead-letter topics (they are retried).", "topic"),
		order: newOrderMetrics(r),
		gates: newGateGauges(r),
	}
}

// registering registers each metric as it is made.
type registering struct{ reg prometheus.Registerer }

// durationBuckets are the classic buckets of every duration histogram (native
// histograms are offered too).
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func register[C prometheus.Collector](r *registering, c C) C {
	r.reg.MustRegister(c)
	return c
}

func counter(r *registering, name, help string) prometheus.Counter {
	return register(r, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

func counterVec(r *registering, name, help string, labels ...string) *prometheus.CounterVec {
	return register(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

func gauge(r *registering, name, help string) prometheus.Gauge {
	return register(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

func gaugeVec(r *registering, name, help string, labels ...string) *prometheus.GaugeVec {
	return register(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
}

func histogramOpts(name, help string) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets, NativeHistogramBucketFactor: 1.1}
}

func histogram(r *registering, name, help string) prometheus.Histogram {
	return register(r, prometheus.NewHistogram(histogramOpts(name, help)))
}

func histogramVec(r *registering, name, help string, labels ...string) *prometheus.HistogramVec {
	return register(r, prometheus.NewHistogramVec(histogramOpts(name, help), labels))
}
