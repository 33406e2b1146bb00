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
	"github.com/fleetworks/fleet/handlers"
)

// Dead-letter reasons, the values of the fleet-error-kind header.
const (
	ReasonDecode            = "decode"
	ReasonUnknownType       = "unknown_type"
	ReasonPermanent         = "permanent"
	ReasonConflict          = "conflict"
	ReasonAttemptsExhausted = "attempts_exhausted"
	ReasonInvalidEffect     = "invalid_effect"
	// ReasonInvalidRecord is an event the store cannot claim: its record key
	// holds something other than a record, or its keys span Redis Cluster
	// slots (a message key starting with '}').
	ReasonInvalidRecord = "invalid_record"
	// ReasonRetryable is the error kind on a retry topic: the handler failed
	// with a retryable error in every in-place attempt of a delivery.
	ReasonRetryable = "retryable"
)

// verdictOtherGroup marks a retry-topic message another consumer group
// wrote: not this group's to run, so it is only acknowledged.
const verdictOtherGroup = "other_group"

// work is one fetched message on its way through the pipeline.
type work struct {
	msg       kafka.Message
	ev        handlers.Event
	typeLabel string
	// verdict, when set, sends the message straight to the dead-letter topic.
	verdict    string
	verdictErr error

	claim dedupe.Claim
	res   dedupe.ClaimResult
	lease dedupe.Lease
	tx    *handlers.Tx

	// p is the partition the event belongs to.
	p *partition
	// ctx is the context of the current run, with the handler timeout as its
	// deadline; cancel ends it (lease lost, run over).
	ctx    context.Context
	cancel context.CancelFunc
	lost   atomic.Bool
	// completed answers a completion; it is the lane's, which has one event
	// at a time.
	completed chan error
	// next is the following event of the same key, queued behind this one.
	next *work

	firstFailure, lastFailure time.Time
	// tries counts the handler runs of this delivery.
	tries int
	// ran is set once a handler runs under the current lease: a claim
	// given up before that gives its attempt back (Store.Unclaim).
	ran bool
	// run is the attempt running under the held claim (leases.mu).
	run run
	// size is the message's share of the partition's byte budget.
	size int64
}

// partition processes one assigned partition for one generation.
type partition struct {
	e     *Engine
	topic string
	route route
	id    int
	start int64
	wm    *watermark
	// stop is closed when the generation drains; work is cancelled when the
	// drain budget runs out.
	stop <-chan struct{}
	work context.Context
	// ready holds events whose key has nothing before it in flight; the
	// lanes take them from there.
	ready chan *work
	// Lanes start as events need them, up to Config.Lanes, so that an idle
	// partition (a retry tier, say) holds no goroutines: spawned is the
	// dispatcher's count, busy the lanes running an event now.
	lanes   sync.WaitGroup
	spawned int
	busy    atomic.Int32
	slots   chan struct{}
	bytes   *byteBudget

	// keys holds, for every key with an event in a lane, the last event of
	// that key queued behind it (or the running event itself).
	keysMu sync.Mutex
	keys   map[string]*work

	leases *leases

	lag prometheus.Gauge
	// hwm is the high-water mark of the last fetched message; committed the
	// last offset committed for the partition (-1 before the first commit
	// of this generation); waiting the Kafka timestamp (unix ns) of a retry
	// message waiting for its not-before time, 0 when none waits, and
	// waitingOffset its offset.
	hwm, committed, waiting, waitingOffset atomic.Int64
}

func (e *Engine) newPartition(topic string, a kafka.PartitionAssignment, stop <-chan struct{}, workCtx context.Context) *partition {
	p := &partition{
		e: e, topic: topic, route: e.routes[topic], id: a.ID, start: a.Offset,
		wm:     newWatermark(a.Offset),
		stop:   stop,
		work:   workCtx,
		ready:  make(chan *work, e.cfg.MaxInFlight),
		slots:  make(chan struct{}, e.cfg.MaxInFlight),
		bytes:  newByteBudget(e.cfg.MaxInFlightBytes),
		keys:   make(map[string]*work),
		leases: newLeases(),
		lag:    e.m.lag.WithLabelValues(topic, strconv.Itoa(a.ID)),
	}
	p.committed.Store(-1)
	p.hwm.Store(-1)
	return p
}

// close forgets the partition's metrics after the generation ended.
func (p *partition) close() {
	p.e.m.lag.DeleteLabelValues(p.topic, strconv.Itoa(p.id))
}

func (p *partition) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// run fetches, claims in batches and feeds the lanes until the generation
// drains; it returns when every lane has finished or abandoned its events.
func (p *partition) run() {
	e := p.e
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     e.cfg.Brokers,
		Dialer:      e.cfg.Dialer,
		Topic:       p.topic,
		Partition:   p.id,
		MinBytes:    1,
		MaxBytes:    16 << 20,
		MaxWait:     e.cfg.MaxWait,
		ErrorLogger: kafkaLogger(e.log.With("topic", p.topic, "partition", p.id), -4),
	})
	defer reader.Close()
	if err := reader.SetOffset(p.start); err != nil {
		e.log.Error("set start offset", "topic", p.topic, "partition", p.id, "offset", p.start, "err", err)
	}

	fetchCtx, cancelFetch := context.WithCancel(p.work)
	defer cancelFetch()
	fetched := make(chan *work, e.cfg.BatchSize)
	var wg sync.WaitGroup
	wg.Go(func() { p.fetch(fetchCtx, reader, fetched) })
	beat := make(chan struct{})
	var hb sync.WaitGroup
	hb.Go(func() { p.heartbeat(beat) })

	batch := make([]*work, 0, e.cfg.BatchSize)
	for p.collect(fetched, &batch) {
		p.dispatch(batch)
		batch = batch[:0]
	}
	// Draining: nothing new is dispatched; events already fetched but not
	// dispatched are simply not finished, so the watermark stays before them.
	cancelFetch()
	close(p.ready)
	lanesDone := make(chan struct{})
	go func() {
		wg.Wait()
		p.lanes.Wait()
		close(lanesDone)
	}()
	select {
	case <-lanesDone:
	case <-p.work.Done():
		// The drain budget is spent and every handler's context cancelled.
		// A handler that ignores its context must not hold the generation
		// (and so the whole group) hostage: after a short grace, leave it.
		// Its offset stays uncommitted, its lease is no longer extended, and
		// when it returns its completion is refused (the partition's work is
		// cancelled); the next owner takes the event over once the lease
		// expires.
		select {
		case <-lanesDone:
		case <-time.After(hungGrace):
			n := p.leases.running()
			e.m.hung.Add(float64(n))
			part := p.id
			e.errors.add(ErrorEntry{Time: time.Now().UTC(), What: "hung handlers left behind", Topic: p.topic, Partition: &part,
				Error: strconv.Itoa(n) + " handlers ignore their cancelled context"})
			e.log.Error("handlers ignore their cancelled context: leaving them behind so that the group can rebalance",
				"topic", p.topic, "partition", p.id, "running", n)
		}
	}
	close(beat)
	hb.Wait()
}

// hungGrace is how long a drain waits, past its budget, for handlers whose
// context was cancelled.
const hungGrace = time.Second

const (
	written writeResult = iota
	tooLargeToWrite
	cancelled
)
