package consumer

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/dedupe"
)

// partition processes one assigned partition for one generation: a reader,
// the intake that batches what it fetches (intake.go), dispatch that decodes
// and claims a batch (dispatch.go, claims.go), the key queue and the lanes
// that run each delivery's lifecycle (keyqueue.go, lanes.go, process.go),
// and the lease keeper that extends every claim held meanwhile (leases.go).
//
// A source partition reads for the whole generation. A partition of a retry
// tier or of a parked topic reads in sessions, only while it has something
// to read: between them it sleeps, without a reader, goroutine or buffer,
// and the generation's watcher (watch.go) starts its next session.
type partition struct {
	e     *Engine
	topic string
	route route
	id    int
	// scope names the gates of the partition's source partition
	// (dedupe.OrderScope); batches counts the batches claimed, for the
	// key queue's marks.
	scope   string
	batches atomic.Uint64
	wm      *watermark
	// drain is the generation's stop signal.
	drain *drain
	// rules are the lifecycle's settings.
	rules rules

	// ready holds deliveries whose key has nothing before it in flight; the
	// lanes take them from there. Lanes start as deliveries need them and
	// end when none is ready (lanes.go): spawned counts them, under laneMu,
	// and busy the lanes running one now.
	ready   chan *delivery
	keys    *keyQueue
	lanes   sync.WaitGroup
	laneMu  sync.Mutex
	spawned int
	busy    atomic.Int32
	// slots and bytes are the backpressure: a slot per delivery in flight,
	// and a cap on their bytes. ready, slots and bytes are made for each
	// session (makeBuffers).
	slots chan struct{}
	bytes *byteBudget

	leases *leaseKeeper

	// leaders are the generation's partition leaders, for the reader.
	leaders *leaders

	// nap is what a partition that sleeps between sessions keeps
	// (sleep.go).
	nap

	lag prometheus.Gauge
	// spans starts the events' process spans, when tracing (tracing.go).
	spans processSpan
	// hwm is the high-water mark of the last fetched message; committed the
	// last offset committed for the partition (-1 before the first commit
	// of this generation); waiting the Kafka timestamp (unix ns) of a retry
	// message waiting for its not-before time, 0 when none waits, and
	// waitingOffset its offset.
	hwm, committed, waiting, waitingOffset atomic.Int64
}

// newPartition makes the partition of an assignment in a generation.
func (e *Engine) newPartition(topic string, a kafka.PartitionAssignment, g *genParts) *partition {
	p := &partition{
		e: e, topic: topic, route: e.routes[topic], id: a.ID, leaders: g.leaders,
		wm:    newWatermark(a.Offset),
		scope: dedupe.OrderScope(e.cfg.Group, e.routes[topic].source, a.ID),
		drain: g.drain,
		rules: rules{maxAttempts: e.cfg.MaxAttempts, inPlaceAttempts: e.cfg.InPlaceAttempts, tierDelays: e.cfg.RetryDelays,
			maxInPlaceWait: e.cfg.MaxRetryBackoff},
		keys: newKeyQueue(),
		lag:  e.m.lag.WithLabelValues(topic, strconv.Itoa(a.ID)),
	}
	if e.tracer != nil {
		p.spans = newProcessSpan(topic, a.ID, e.cfg.Group)
	}
	p.leases = newLeaseKeeper(e.cfg.Lease, p.extendLeases, p.forfeited)
	p.leases.keep(g.beats)
	p.committed.Store(-1)
	p.hwm.Store(-1)
	return p
}

// makeBuffers makes a session's channels and byte budget.
func (p *partition) makeBuffers() {
	p.ready = make(chan *delivery, p.e.cfg.MaxInFlight)
	p.slots = make(chan struct{}, p.e.cfg.MaxInFlight)
	p.bytes = newByteBudget(p.e.cfg.MaxInFlightBytes)
}

// dropBuffers drops them once every lane has ended, so that a sleeping
// partition holds none.
func (p *partition) dropBuffers() {
	p.ready, p.slots, p.bytes = nil, nil, nil
}

// close waits for the lease keeper's heartbeat, whose context the
// generation cancelled, and forgets the partition's metrics, after the
// generation ended.
func (p *partition) close() {
	p.leases.stop()
	p.e.m.lag.DeleteLabelValues(p.topic, strconv.Itoa(p.id))
}

// run is one session: it fetches, claims in batches and feeds the lanes
// until the generation drains or, for a partition that sleeps between
// sessions, until it has nothing to read (see drowsy); it returns when every
// lane has finished or abandoned its deliveries (or, past the drain budget,
// left hung handlers behind). A partition that fell asleep is then the
// watcher's.
func (p *partition) run() {
	p.makeBuffers()
	fetchCtx, cancelFetch := context.WithCancel(p.drain.work)
	defer cancelFetch()
	fetched, fetcher := p.startFetcher(fetchCtx)
	c := p.feed(fetched)
	// Draining or falling asleep: nothing new is dispatched; deliveries
	// fetched but not dispatched are simply not finished, so the watermark
	// stays before them, and the next session or owner reads them again.
	cancelFetch()
	fetcher.Wait()
	p.dropFetched(fetched)
	close(p.ready)
	if p.awaitLanes() && c == asleep {
		p.dropBuffers()
		p.watch.sleep(p)
	}
}

// startFetcher starts the session's fetcher, which reads from the
// partition's next offset into fetched until ctx is done.
func (p *partition) startFetcher(ctx context.Context) (chan *delivery, *sync.WaitGroup) {
	reader := p.openReader(ctx)
	fetched := make(chan *delivery, p.e.cfg.BatchSize)
	var fetcher sync.WaitGroup
	p.lastFetch.Store(time.Now().UnixNano())
	fetcher.Go(func() {
		defer reader.close()
		p.fetch(ctx, reader, fetched)
	})
	return fetched, &fetcher
}

// feed collects batches and dispatches them to the lanes until the
// partition drains or falls asleep, and says which.
func (p *partition) feed(fetched <-chan *delivery) collected {
	var idle <-chan time.Time
	if p.watch != nil {
		t := time.NewTicker(sleepAfter(p.e.cfg))
		defer t.Stop()
		idle = t.C
	}
	batch := make([]*delivery, 0, p.e.cfg.BatchSize)
	for {
		if c := p.collect(fetched, &batch, idle); c != batchReady {
			return c
		}
		p.dispatch(batch)
		batch = batch[:0]
	}
}

// awaitLanes waits for the lanes to finish, within the drain budget and a
// short grace after it. It reports whether they all finished.
func (p *partition) awaitLanes() bool {
	lanesDone := make(chan struct{})
	go func() {
		p.lanes.Wait()
		close(lanesDone)
	}()
	select {
	case <-lanesDone:
		return true
	case <-p.drain.work.Done():
	}
	// The drain budget is spent and every handler's context cancelled. A
	// handler that ignores its context must not hold the generation (and so
	// the whole group) hostage: after a short grace, leave it. Its offset
	// stays uncommitted, its lease is no longer extended, and when it
	// returns its completion is refused (the partition's work is
	// cancelled); the next owner takes the event over once the lease
	// expires.
	select {
	case <-lanesDone:
		return true
	case <-time.After(hungGrace):
		p.hungLeftBehind(p.leases.running())
		return false
	}
}

// hungGrace is how long a drain waits, past its budget, for handlers whose
// context was cancelled.
const hungGrace = time.Second

// hungLeftBehind records n handlers left running past the drain.
func (p *partition) hungLeftBehind(n int) {
	p.e.m.hung.Add(float64(n))
	part := p.id
	p.e.errors.add(ErrorEntry{Time: time.Now().UTC(), What: "hung handlers left behind", Topic: p.topic, Partition: &part,
		Error: strconv.Itoa(n) + " handlers ignore their cancelled context"})
	p.e.log.Error("handlers ignore their cancelled context: leaving them behind so that the group can rebalance",
		"topic", p.topic, "partition", p.id, "running", n)
}

// extendLeases is the lease keeper's way to the store, measured and tracked
// for readiness.
func (p *partition) extendLeases(ctx context.Context, leases []dedupe.Lease) ([]error, error) {
	start := time.Now()
	errs, err := p.e.store.ExtendBatch(ctx, leases)
	p.e.m.storeTime.WithLabelValues("extend").Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		p.e.storeOK()
	case p.drain.work.Err() == nil:
		p.e.storeFailed("extend", err)
	}
	return errs, err
}

// forfeited logs a handler that outlived its context by a whole lease.
func (p *partition) forfeited(d *delivery) {
	p.e.log.Warn("handler still running a lease after its context ended: its lease is forfeited and its completion will be refused",
		"topic", p.topic, "partition", p.id, "offset", d.msg.Offset, "id", d.ev.ID, "type", d.ev.Type, "attempt", d.attempt.res.Attempts)
}
