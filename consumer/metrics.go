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

	// reg takes the engine's scrape-time metrics.
	reg prometheus.Registerer
}

// NewMetrics creates the engine's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		reg: reg,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_events_received_total",
			Help: "Kafka messages fetched, by topic and event type (unknown when undecodable or unregistered).",
		}, []string{"topic", "type"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_events_finished_total",
			Help: "Events finished, by outcome: processed, duplicate, conflict (dead-lettered), retried (to a retry topic), dead_lettered or other_group (another group's retry).",
		}, []string{"topic", "type", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_retries_total",
			Help: "In-place retries of events whose handler failed with a retryable error, by reason: error, or timeout (the handler timeout passed).",
		}, []string{"topic", "type", "reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_dead_letters_total",
			Help: "Events written to a dead-letter topic, by reason.",
		}, []string{"topic", "reason"}),
		retryTopics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_retry_topic_events_total",
			Help: "Events written to a retry topic after their in-place attempts failed, by source topic and tier.",
		}, []string{"topic", "tier"}),
		hung: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleet_consumer_hung_handlers_total",
			Help: "Handlers left running at the end of a drain because they ignored their cancelled context.",
		}),
		fetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_fetch_errors_total",
			Help: "Fetches from Kafka that failed and are retried with backoff, by topic.",
		}, []string{"topic"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_handler_throttled_seconds_total",
			Help: "Time handler runs waited for the fleet-wide rate limit of their event type.",
		}, []string{"type"}),
		handlerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "fleet_handler_duration_seconds",
			Help:                        "Duration of one handler attempt.",
			Buckets:                     buckets,
			NativeHistogramBucketFactor: 1.1,
		}, []string{"type"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:                        "fleet_consumer_event_latency_seconds",
			Help:                        "Time from the Kafka message timestamp to the event being finished.",
			Buckets:                     buckets,
			NativeHistogramBucketFactor: 1.1,
		}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleet_lease_lost_total",
			Help: "Runs whose lease was lost while the handler ran: an external effect may have happened twice.",
		}),
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "fleet_store_duration_seconds",
			Help:                        "Duration of idempotency store calls, by operation.",
			Buckets:                     buckets,
			NativeHistogramBucketFactor: 1.1,
		}, []string{"operation"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_store_errors_total",
			Help: "Idempotency store calls that failed, by operation.",
		}, []string{"operation"}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleet_store_claims_busy_total",
			Help: "Claims that found the event held by another live owner.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleet_store_takeovers_total",
			Help: "Claims that took an event over from an owner whose lease expired.",
		}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleet_consumer_partitions_assigned",
			Help: "Partitions assigned to this worker.",
		}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleet_consumer_rebalances_total",
			Help: "Consumer group generations joined.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleet_consumer_in_flight_events",
			Help: "Events fetched and not yet finished.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleet_consumer_lag_offsets",
			Help: "Messages behind the partition's high-water mark, as of the last fetch.",
		}, []string{"topic", "partition"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_commits_total",
			Help: "Offset commits, by result.",
		}, []string{"result"}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleet_store_up",
			Help: "1 when the last idempotency store call succeeded.",
		}),
		groupJoined: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleet_consumer_group_joined",
			Help: "1 while this worker is a member of a consumer group generation.",
		}),
		publishError: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleet_consumer_publish_errors_total",
			Help: "Failed writes to dead-letter topics (they are retried).",
		}, []string{"topic"}),
	}
	reg.MustRegister(m.received, m.finished, m.retries, m.deadLetters, m.retryTopics, m.hung, m.fetchErrors, m.throttled, m.handlerTime, m.latency,
		m.leaseLost, m.storeTime, m.storeErrors, m.busy, m.takeovers, m.assigned, m.rebalances,
		m.inFlight, m.lag, m.commits, m.storeUp, m.groupJoined, m.publishError)
	return m
}
