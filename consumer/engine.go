package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// Store is the idempotency store the engine drives (implemented by
// dedupe.Redis and dedupe.Memory). Every call is safe to repeat; an error
// means the store could not be asked, and the engine waits and asks again.
// Calls must honour their context's deadline (for go-redis:
// Options.ContextTimeoutEnabled): heartbeats are bounded by a third of the
// lease.
type Store interface {
	ClaimBatch(ctx context.Context, claims []dedupe.Claim) ([]dedupe.ClaimResult, error)
	ExtendBatch(ctx context.Context, leases []dedupe.Lease) ([]error, error)
	CompleteBatch(ctx context.Context, completions []dedupe.Completion) ([]error, error)
	Release(ctx context.Context, lease dedupe.Lease) error
	Unclaim(ctx context.Context, lease dedupe.Lease) error
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
	// owners makes an owner token per claim attempt.
	owners *dedupe.Owners

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

	completions chan *work
	claims      chan *claimRequest
}

// claimRequest is one partition's batch of claims waiting for the engine's
// group commit; done is closed when results or err are set, so a requester
// that stopped waiting never blocks the loop.
type claimRequest struct {
	claims  []dedupe.Claim
	results []dedupe.ClaimResult
	err     error
	done    chan struct{}
}

// New returns an engine. The publisher receives dead letters; it must
// acknowledge writes with RequireAll (see [NewPublisher]).
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
		owners:      dedupe.NewOwners(),
		completions: make(chan *work, cfg.MaxInFlight),
		claims:      make(chan *claimRequest, 64),
	}
	if m.reg != nil {
		if err := m.reg.Register(newStatusCollector(e)); err != nil {
			return nil, fmt.Errorf("consumer: register status metrics: %w", err)
		}
	}
	return e, nil
}

// Ready reports why the engine should not receive traffic, or nil: it must be
// a member of a group generation and its store must answer.
func (e *Engine) Ready() error {
	if msg := e.storeErr.Load(); msg != nil {
		return fmt.Errorf("idempotency store unavailable: %s", *msg)
	}
	if !e.joined.Load() {
		if msg := e.kafkaErr.Load(); msg != nil {
			return fmt.Errorf("no broker of %s answers as it should: %s", strings.Join(e.cfg.Brokers, ","), *msg)
		}
		return fmt.Errorf("joining consumer group %s (not yet a member of a generation)", e.cfg.Group)
	}
	return nil
}

// kafkaFailed records why the cluster could not be read or joined, for
// readiness; kafkaOK forgets it.
func (e *Engine) kafkaFailed(err error) {
	msg := err.Error()
	e.kafkaErr.Store(&msg)
}

func (e *Engine) kafkaOK() { e.kafkaErr.Store(nil) }

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
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
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
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}

	// Background work outlives generations: it stops after the last drain.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { e.completeLoop(bg) })
	wg.Go(func() { e.claimLoop(bg) })
	if p, ok := e.store.(Pinger); ok {
		wg.Go(func() { e.probeStore(bg, p) })
	}
	defer func() {
		stopBG()
		wg.Wait()
	}()
	defer func() {
		if err := group.Close(); err != nil {
			e.log.Warn("leave consumer group", "err", err)
		}
	}()

	for {
		gen, err := group.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if refused(err) {
			return fmt.Errorf("join consumer group %s: kafka refused the connection: %w", e.cfg.Group, err)
		}
		if errors.Is(err, kafka.InvalidSessionTimeout) {
			// Configuration the broker refuses: retrying cannot help.
			return fmt.Errorf("join consumer group %s: %w: the broker bounds it with group.min.session.timeout.ms and group.max.session.timeout.ms", e.cfg.Group, err)
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

// runGeneration processes the partitions of one generation until it ends or
// ctx is cancelled, then drains: fetching stops, queued events are released,
// running handlers get DrainTimeout to finish, and the watermarks are
// committed. It returns only then: the generation ends for every partition
// when this function returns.
func (e *Engine) runGeneration(ctx, genCtx context.Context, gen *kafka.Generation) {
	e.joined.Store(true)
	e.m.groupJoined.Set(1)
	e.gen.Store(&generation{id: gen.ID, member: gen.MemberID})
	e.alive.Store(time.Now().UnixNano())
	defer func() {
		e.joined.Store(false)
		e.m.groupJoined.Set(0)
		e.parts.Store(nil)
		e.draining.Store(0)
	}()

	stop := make(chan struct{})
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	var parts []*partition
	for topic, assignments := range gen.Assignments {
		for _, a := range assignments {
			parts = append(parts, e.newPartition(topic, a, stop, work))
		}
	}
	e.parts.Store(&parts)
	e.m.assigned.Set(float64(len(parts)))
	e.log.Info("generation started", "group", e.cfg.Group, "generation", gen.ID, "member", gen.MemberID, "partitions", len(parts))

	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(p.run)
	}
	committed := make(map[*partition]int64, len(parts))
	commit := func() {
		offsets := map[string]map[int]int64{}
		for _, p := range parts {
			off := p.wm.commitOffset()
			if off < 0 || off == committed[p] {
				continue
			}
			if offsets[p.topic] == nil {
				offsets[p.topic] = map[int]int64{}
			}
			offsets[p.topic][p.id] = off
		}
		if len(offsets) == 0 {
			return
		}
		if err := gen.CommitOffsets(offsets); err != nil {
			e.m.commits.WithLabelValues("error").Inc()
			e.log.Warn("commit offsets", "generation", gen.ID, "err", err)
			return
		}
		e.m.commits.WithLabelValues("ok").Inc()
		for _, p := range parts {
			if off, ok := offsets[p.topic][p.id]; ok {
				committed[p] = off
				p.committed.Store(off)
			}
		}
	}

	ticker := time.NewTicker(e.cfg.CommitInterval)
	defer ticker.Stop()
wait:
	for {
		select {
		case <-ticker.C:
			e.alive.Store(time.Now().UnixNano())
			commit()
		case <-genCtx.Done():
			break wait
		case <-ctx.Done():
			break wait
		}
	}

	started := time.Now()
	e.draining.Store(started.UnixNano())
	close(stop)
	deadline := time.AfterFunc(e.cfg.DrainTimeout, cancelWork)
	wg.Wait()
	deadline.Stop()
	commit()
	for _, p := range parts {
		p.close()
	}
	e.m.assigned.Set(0)
	e.log.Info("generation drained", "generation", gen.ID, "took", time.Since(started).Round(time.Millisecond))
}

// Healthy reports why the engine's loops look wedged, or nil: inside a
// generation, the loop that commits offsets must go round every commit
// interval; a drain must end within its budget and the grace for hung
// handlers. Waiting for Kafka or Redis is not wedged: readiness reports it.
func (e *Engine) Healthy() error {
	now := time.Now()
	slack := 10 * time.Second
	if d := e.draining.Load(); d != 0 {
		if took := now.Sub(time.Unix(0, d)); took > e.cfg.DrainTimeout+hungGrace+slack {
			return fmt.Errorf("drain running for %v, past its budget of %v", took.Round(time.Second), e.cfg.DrainTimeout)
		}
		return nil
	}
	if e.joined.Load() {
		if since := now.Sub(time.Unix(0, e.alive.Load())); since > 3*e.cfg.CommitInterval+slack {
			return fmt.Errorf("generation loop has not gone round for %v", since.Round(time.Second))
		}
	}
	return nil
}

// storeOK and storeFailed track the store's reachability for readiness.
func (e *Engine) storeOK() {
	if e.storeErr.Load() != nil {
		e.storeErr.Store(nil)
		e.log.Info("idempotency store reachable again")
	}
	e.m.storeUp.Set(1)
}

func (e *Engine) storeFailed(op string, err error) {
	msg := err.Error()
	if e.storeErr.Swap(&msg) == nil {
		e.log.Error("idempotency store unavailable: no handler runs until it answers", "operation", op, "err", err)
		e.errors.add(ErrorEntry{Time: time.Now().UTC(), What: "store unavailable (" + op + ")", Error: msg})
	}
	e.m.storeErrors.WithLabelValues(op).Inc()
	e.m.storeUp.Set(0)
}

// probeStore pings the store every second so that readiness follows the
// store even when no events flow.
func (e *Engine) probeStore(ctx context.Context, p Pinger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := p.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			e.storeFailed("ping", err)
		default:
			e.storeOK()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// completeLoop is the group commit of completions: it takes every completion
// that is waiting, completes them in one store round trip, and answers each.
// Store errors are retried with backoff (fail closed) until the requester
// gives up or the engine stops.
func (e *Engine) completeLoop(ctx context.Context) {
	batch := make([]*work, 0, e.cfg.BatchSize)
	reqs := make([]dedupe.Completion, 0, e.cfg.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case w := <-e.completions:
			batch = append(batch, w)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case w := <-e.completions:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		for attempt := 0; ; attempt++ {
			live := batch[:0]
			reqs = reqs[:0]
			for _, w := range batch {
				if err := w.p.work.Err(); err != nil {
					w.completed <- err
					continue
				}
				live = append(live, w)
				reqs = append(reqs, dedupe.Completion{Lease: w.lease, Effects: w.tx.Ops(), Result: w.tx.Result()})
			}
			batch = live
			if len(batch) == 0 {
				break
			}
			start := time.Now()
			errs, err := e.store.CompleteBatch(ctx, reqs)
			e.m.storeTime.WithLabelValues("complete").Observe(time.Since(start).Seconds())
			if err == nil {
				e.storeOK()
				for i, w := range batch {
					w.completed <- errs[i]
				}
				break
			}
			e.storeFailed("complete", err)
			if !sleep(ctx, backoff(attempt, 50*time.Millisecond, 2*time.Second)) {
				for _, w := range batch {
					w.completed <- ctx.Err()
				}
				return
			}
		}
	}
}

// claimLoop is the group commit of claims: it takes every partition's batch
// that is waiting, up to 4 batches' worth of claims, claims them all in one
// store round trip and answers each requester. It makes one attempt per
// round; requesters retry (and fail closed) themselves.
func (e *Engine) claimLoop(ctx context.Context) {
	limit := 4 * e.cfg.BatchSize
	var reqs []*claimRequest
	var all []dedupe.Claim
	for {
		reqs, all = reqs[:0], all[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-e.claims:
			reqs = append(reqs, r)
			all = append(all, r.claims...)
		}
	fill:
		for len(all) < limit {
			select {
			case r := <-e.claims:
				reqs = append(reqs, r)
				all = append(all, r.claims...)
			default:
				break fill
			}
		}
		start := time.Now()
		results, err := e.store.ClaimBatch(ctx, all)
		e.m.storeTime.WithLabelValues("claim").Observe(time.Since(start).Seconds())
		for _, r := range reqs {
			if err != nil {
				r.err = err
			} else {
				r.results = results[:len(r.claims):len(r.claims)]
				results = results[len(r.claims):]
			}
			close(r.done)
		}
		clear(reqs)
	}
}

// claim sends claims through the engine's group commit and waits for the
// answer, or until ctx is done.
func (e *Engine) claim(ctx context.Context, claims []dedupe.Claim) ([]dedupe.ClaimResult, error) {
	r := &claimRequest{claims: claims, done: make(chan struct{})}
	select {
	case e.claims <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
		return r.results, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// backoff is the exponential delay before retry number attempt (0-based),
// with full jitter over its upper half.
func backoff(attempt int, base, ceiling time.Duration) time.Duration {
	d := base << min(attempt, 20)
	if d <= 0 || d > ceiling {
		d = ceiling
	}
	half := d / 2
	return half + rand.N(half+1) // #nosec G404 -- jitter spreads retries; it guards nothing
}

// sleep waits d or until ctx is done, and reports whether it waited fully.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func kafkaLogger(log *slog.Logger, level slog.Level) kafka.LoggerFunc {
	return func(msg string, args ...any) {
		log.Log(context.Background(), level, "kafka: "+fmt.Sprintf(msg, args...))
	}
}
