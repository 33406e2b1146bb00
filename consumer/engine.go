package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// Store is the idempotency store the engine drives: the protocol
// ([dedupe.Store]) and the gates of ordered retries ([dedupe.Gates]), which
// dedupe.Redis and dedupe.Memory implement.
type Store interface {
	dedupe.Store
	dedupe.Gates
}

// RateLimiter grants handler runs under fleet-wide limits per event type
// (implemented by dedupe.RateLimits). Limited tells, without I/O, whether a
// type has a limit at all; Reserve answers 0 when a run may start now, or
// how long to wait before asking again.
type RateLimiter interface {
	Limited(eventType string) bool
	Reserve(ctx context.Context, eventType string) (time.Duration, error)
}

// Pinger is implemented by stores that can be probed while no events flow;
// the engine then reports the store's reachability even when idle.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Publisher writes messages to Kafka and returns once every one of them is
// acknowledged by all in-sync replicas.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Engine consumes the source topics as a member of a consumer group and runs
// every event through the idempotency protocol and its handler. Create it
// with [New] and call [Engine.Run] once.
type Engine struct {
	cfg     Config
	routes  map[string]route
	store   Store
	router  *handlers.Router
	handler handlers.Handler
	dlq     Publisher
	log     *slog.Logger
	m       *Metrics
	// tracer traces every event; nil: no tracing (tracing.go).
	tracer trace.Tracer
	// owners makes an owner token per claim attempt.
	owners *dedupe.Owners
	// eventRetry is the backoff between in-place attempts at an event.
	eventRetry retryPolicy

	joined   atomic.Bool
	storeErr atomic.Pointer[string]
	// kafkaErr is the last error of reading the cluster's metadata or
	// joining the group, until the group is joined.
	kafkaErr atomic.Pointer[string]

	// For /status and /healthz: the current generation and its partitions,
	// the last failures, when the generation loop last went round (unix
	// nanoseconds) and when the current drain started (0: none).
	gen      atomic.Pointer[generation]
	parts    atomic.Pointer[[]*partition]
	errors   errorRing
	alive    atomic.Int64
	draining atomic.Int64

	// gateStatus is what watchGates last read.
	gateStatus atomic.Pointer[GateStatus]

	completions chan *delivery
	claims      chan *claimRequest
	// slots caps the events in flight over all partitions.
	slots workerSlots
}

// New returns an engine. The store's calls must honour their context's
// deadline (for go-redis: Options.ContextTimeoutEnabled): heartbeats are
// bounded by a third of the lease. The publisher receives dead letters and
// retry messages; it must acknowledge writes with RequireAll (see
// [NewPublisher]).
func New(cfg Config, store Store, router *handlers.Router, dlq Publisher, log *slog.Logger, m *Metrics) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	if store == nil || router == nil || dlq == nil || log == nil || m == nil {
		return nil, errors.New("consumer: store, router, publisher, logger and metrics are required")
	}
	e := &Engine{
		cfg:    cfg,
		routes: routesOf(cfg.Topics, len(cfg.RetryDelays), nil),
		store:  store,
		router: router,
		// The handler timeout is the deadline of each attempt's context
		// (see runHandler), not a middleware: one context per attempt.
		handler:     handlers.Chain(router, handlers.Recover()),
		dlq:         dlq,
		log:         log,
		m:           m,
		tracer:      newTracer(cfg.TracerProvider),
		owners:      dedupe.NewOwners(),
		eventRetry:  retryPolicy{initial: cfg.RetryBackoff, max: cfg.MaxRetryBackoff},
		completions: make(chan *delivery, cfg.MaxInFlight),
		claims:      make(chan *claimRequest, 64),
		slots:       newWorkerSlots(cfg.WorkerMaxInFlight),
	}
	if m.reg != nil {
		if err := m.reg.Register(newStatusCollector(e)); err != nil {
			return nil, fmt.Errorf("consumer: register status metrics: %w", err)
		}
	}
	return e, nil
}

// Run joins the consumer group and processes events until ctx is cancelled,
// then drains within the drain budget, commits, leaves the group and returns
// nil. It returns an error only when the group cannot be created or the
// broker refuses its settings (a session timeout out of the broker's range).
func (e *Engine) Run(ctx context.Context) error {
	topics, err := e.ensureTopics(ctx)
	switch {
	case ctx.Err() != nil:
		return nil // cancelled before the cluster answered
	case err != nil:
		return fmt.Errorf("kafka refused the connection: %w (check the SASL mechanism, username, password and the principal's ACLs)", err)
	}
	group, err := e.consumerGroup(topics)
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	stopBackground := e.startBackground(ctx)
	defer stopBackground()
	defer e.leave(group)
	for {
		gen, err := group.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := joinRefused(e.cfg.Group, err); err != nil {
			return err
		}
		if err != nil {
			e.kafkaFailed(err)
			e.log.Warn("join consumer group", "group", e.cfg.Group, "err", err)
			continue
		}
		e.kafkaOK()
		e.m.rebalances.Inc()
		done := make(chan struct{})
		gen.Start(func(genCtx context.Context) {
			defer close(done)
			e.runGeneration(ctx, genCtx, gen)
		})
		<-done
		if ctx.Err() != nil {
			return nil
		}
	}
}

// leave leaves the consumer group, waiting at most leaveGrace. kafka-go's
// Close waits for a JoinGroup in flight, which the coordinator answers only
// when its rebalance ends, up to the rebalance timeout later (a member that
// does not rejoin holds it up). By now the drain has committed the offsets:
// past the grace the engine stops waiting, and the coordinator drops the
// member when the join ends or its session times out.
func (e *Engine) leave(group *kafka.ConsumerGroup) {
	closed := make(chan error, 1)
	go func() { closed <- group.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			e.log.Warn("leave consumer group", "err", err)
		}
	case <-time.After(leaveGrace):
		e.log.Warn("leave consumer group: the coordinator is rebalancing; not waiting for it to answer", "waited", leaveGrace)
	}
}

// leaveGrace bounds the wait for leaving the group at shutdown.
const leaveGrace = 2 * time.Second

// consumerGroup is the engine's membership of its consumer group.
func (e *Engine) consumerGroup(topics []string) (*kafka.ConsumerGroup, error) {
	return kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                e.cfg.Group,
		Brokers:           e.cfg.Brokers,
		Dialer:            e.cfg.Dialer,
		Topics:            topics,
		SessionTimeout:    e.cfg.SessionTimeout,
		RebalanceTimeout:  e.cfg.RebalanceTimeout,
		HeartbeatInterval: e.cfg.HeartbeatInterval,
		JoinGroupBackoff:  time.Second,
		StartOffset:       e.cfg.StartOffset,
		ErrorLogger:       kafkaLogger(e.log, slog.LevelWarn),
	})
}

// joinRefused is the error that ends Run when joining the group failed for
// good (the broker refuses the login or the settings), or nil when joining
// may be tried again.
func joinRefused(group string, err error) error {
	switch {
	case refused(err):
		return fmt.Errorf("join consumer group %s: kafka refused the connection: %w", group, err)
	case errors.Is(err, kafka.InvalidSessionTimeout):
		return fmt.Errorf("join consumer group %s: %w: the broker bounds it with group.min.session.timeout.ms and group.max.session.timeout.ms", group, err)
	}
	return nil
}

// startBackground starts the work that outlives generations: the group
// commits of claims and completions, and the store probe. The function it
// returns stops them, after the last drain.
func (e *Engine) startBackground(ctx context.Context) (stop func()) {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { e.completeLoop(bg) })
	wg.Go(func() { e.claimLoop(bg) })
	wg.Go(func() { e.watchGates(bg) })
	if p, ok := e.store.(Pinger); ok {
		wg.Go(func() { e.probeStore(bg, p) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func kafkaLogger(log *slog.Logger, level slog.Level) kafka.LoggerFunc {
	return func(msg string, args ...any) {
		log.Log(context.Background(), level, "kafka: "+fmt.Sprintf(msg, args...))
	}
}
