package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// fetch reads messages into work items on fetched until ctx is cancelled.
// kafka-go retries broker errors itself; other errors are logged and retried
// with backoff.
func (p *partition) fetch(ctx context.Context, r *kafka.Reader, fetched chan<- *work) {
	for attempt := 0; ; {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.e.m.fetchErrors.WithLabelValues(p.topic).Inc()
			part := p.id
			p.e.errors.add(ErrorEntry{Time: time.Now().UTC(), What: "fetch", Topic: p.topic, Partition: &part, Error: err.Error()})
			p.e.log.Warn("fetch", "topic", p.topic, "partition", p.id, "err", err)
			if !sleep(ctx, backoff(attempt, 100*time.Millisecond, 5*time.Second)) {
				return
			}
			attempt++
			continue
		}
		attempt = 0
		// Backpressure: the bytes of the messages queued here and in flight
		// are capped; a message over the budget waits until it fits, or
		// goes alone when nothing else is held.
		size := messageSize(&m)
		if !p.bytes.take(size, ctx.Done()) {
			return
		}
		w := workPool.Get().(*work)
		w.msg, w.p, w.size = m, p, size
		// A retry topic's partition waits, fetching nothing more, until its
		// next event of this group is due: they are in due order, since one
		// tier has one delay per group. Other groups' messages (retry topics
		// are per source topic) are only acknowledged, so they never make
		// this group wait. Other partitions and topics go on meanwhile.
		if p.route.tier > 0 && p.ours(&w.msg) {
			if !p.due(ctx, &w.msg) {
				return
			}
		}
		select {
		case fetched <- w:
		case <-ctx.Done():
			return
		}
	}
}

// due waits until m's not-before time, or until ctx is done; it reports
// false in the latter case. A message without a readable not-before time is
// due at once. The wait is capped (see notBefore), and while it lasts the
// waiting message counts as lag, so that a stalled retry partition shows.
func (p *partition) due(ctx context.Context, m *kafka.Message) bool {
	now := time.Now()
	t, ok := notBefore(m, p.tierDelay(), now)
	if !ok || !t.After(now) {
		return true
	}
	p.hwm.Store(m.HighWaterMark)
	p.lag.Set(float64(max(m.HighWaterMark-m.Offset, 0)))
	p.waitingOffset.Store(m.Offset)
	p.waiting.Store(max(m.Time.UnixNano(), 1))
	defer p.waiting.Store(0)
	return sleep(ctx, t.Sub(now))
}

// notBefore is when a retry message may run: its fleet-not-before time,
// but never later than the tier's delay after the message was written, nor
// after now: fleet writes no other, and a message that says otherwise (a
// producer writing to the retry topic, a clock gone wrong) must not stall
// its partition. ok is false without a readable time.
func notBefore(m *kafka.Message, delay time.Duration, now time.Time) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, fleetHeader(m.Headers, HeaderNotBefore))
	if err != nil {
		return time.Time{}, false
	}
	latest := now.Add(delay)
	if !m.Time.IsZero() && m.Time.Add(delay).Before(latest) {
		latest = m.Time.Add(delay)
	}
	if t.After(latest) {
		t = latest
	}
	return t, true
}

// tierDelay is the delay of the partition's retry tier: the configured one,
// or for a tier beyond them (written under other settings) the longest
// configured delay, 0 when there is none.
func (p *partition) tierDelay() time.Duration {
	delays := p.e.cfg.RetryDelays
	switch {
	case p.route.tier <= len(delays):
		return delays[p.route.tier-1]
	case len(delays) > 0:
		return slices.Max(delays)
	}
	return 0
}

// collect waits for the next batch: one message, then whatever else is
// already fetched, up to BatchSize and the in-flight cap. It reports false
// when the partition drains.
func (p *partition) collect(fetched <-chan *work, batch *[]*work) bool {
	for len(*batch) < cap(*batch) {
		// Backpressure: a slot per in-flight event.
		if len(*batch) == 0 {
			select {
			case p.slots <- struct{}{}:
			case <-p.stop:
				return false
			}
		} else {
			select {
			case p.slots <- struct{}{}:
			default:
				return true
			}
		}
		var w *work
		if len(*batch) == 0 {
			select {
			case w = <-fetched:
			case <-p.stop:
				<-p.slots
				return false
			}
		} else {
			select {
			case w = <-fetched:
			default:
				<-p.slots
				return true
			}
		}
		*batch = append(*batch, w)
	}
	return true
}

// messageSize is what a message holds in memory, roughly: key, value and
// headers.
func messageSize(m *kafka.Message) int64 {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// byteBudget caps the bytes of a partition's messages between fetch and
// finish. One goroutine takes (the fetcher); any goroutine gives back.
type byteBudget struct {
	mu    sync.Mutex
	used  int64
	max   int64
	freed chan struct{}
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, freed: make(chan struct{}, 1)}
}

// take reserves n bytes, waiting for bytes to be given back while over
// budget; it reports false if stop closes first. With nothing held any n
// fits, so an oversized message still goes through.
func (b *byteBudget) take(n int64, stop <-chan struct{}) bool {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		select {
		case <-b.freed:
		case <-stop:
			return false
		}
	}
}

func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

// dispatch decodes a batch, claims the decodable events in one round trip
// and hands every event to the lanes, in offset order: an event whose key
// has an earlier event in flight waits behind it.
func (p *partition) dispatch(batch []*work) {
	e := p.e
	claims := make([]dedupe.Claim, 0, len(batch))
	claimed := make([]*work, 0, len(batch))
	now := time.Now().UnixNano()
	for _, w := range batch {
		var ts int64
		if !w.msg.Time.IsZero() {
			ts = w.msg.Time.UnixNano()
		}
		p.wm.add(w.msg.Offset, now, ts)
		w.typeLabel = "unknown"
		if p.route.tier > 0 && !p.ours(&w.msg) {
			w.verdict = verdictOtherGroup
			continue
		}
		if reason, err := checkLimits(&e.cfg, p.view(w)); err != nil {
			w.verdict, w.verdictErr = reason, err
			// The id and type, for the logs, when the headers carry them.
			w.ev.ID, w.ev.Type, w.ev.Key = clip(header(w.msg.Headers, HeaderID)), clip(header(w.msg.Headers, HeaderType)), clip(string(w.msg.Key))
			continue
		}
		ev, err := Decode(&w.msg)
		w.ev = ev
		tooLong, longErr := checkAttributes(&e.cfg, &ev)
		switch {
		case err != nil:
			w.verdict, w.verdictErr = ReasonDecode, err
			w.ev.ID, w.ev.Type, w.ev.Source = clip(ev.ID), clip(ev.Type), clip(ev.Source)
		case tooLong != "":
			w.verdict, w.verdictErr = tooLong, longErr
			w.ev.ID, w.ev.Type, w.ev.Source, w.ev.Subject = clip(ev.ID), clip(ev.Type), clip(ev.Source), clip(ev.Subject)
		default:
			if _, ok := e.router.Lookup(ev.Type); !ok {
				w.verdict, w.verdictErr = ReasonUnknownType, handlers.ErrUnknownType
				break
			}
			w.typeLabel = ev.Type
			w.claim = dedupe.NewClaim(e.cfg.Group, &w.ev)
			w.claim.Owner = e.owners.Next()
			claims = append(claims, w.claim)
			claimed = append(claimed, w)
		}
	}
	// Gauges and counters once per batch, not per event: the batch's last
	// message tells the lag.
	last := &batch[len(batch)-1].msg
	p.hwm.Store(last.HighWaterMark)
	p.lag.Set(float64(max(last.HighWaterMark-last.Offset-1, 0)))
	e.m.inFlight.Add(float64(len(batch)))
	for i := 0; i < len(batch); {
		typ, n := batch[i].typeLabel, 0
		for ; i < len(batch) && batch[i].typeLabel == typ; i++ {
			n++
		}
		e.m.received.WithLabelValues(p.topic, typ).Add(float64(n))
	}
	if len(claims) > 0 {
		results, ok := p.claimBatch(claims)
		if !ok {
			// Draining before the store answered: nothing was claimed for
			// sure, and nothing is finished. Give the slots back.
			for _, w := range batch {
				p.abandon(w)
				recycle(w)
			}
			return
		}
		for i, w := range claimed {
			p.claimed(w, results[i])
		}
	}
	ready := batch[:0]
	p.keysMu.Lock()
	for _, w := range batch {
		k := orderKey(w)
		if k == "" {
			ready = append(ready, w)
			continue
		}
		if last, ok := p.keys[k]; ok {
			last.next = w
		} else {
			ready = append(ready, w)
		}
		p.keys[k] = w
	}
	p.keysMu.Unlock()
	// Enough lanes for what is ready, up to the cap.
	need := len(ready) + len(p.ready) - (p.spawned - int(p.busy.Load()))
	for ; need > 0 && p.spawned < e.cfg.Lanes; need-- {
		p.spawned++
		p.lanes.Go(p.lane)
	}
	// Never blocks: ready holds MaxInFlight, and every event holds a slot.
	for _, w := range ready {
		p.ready <- w
	}
}

// ours reports whether a retry-topic message was written by this consumer
// group: retry topics are per source topic, and every group consuming that
// topic reads them.
func (p *partition) ours(m *kafka.Message) bool {
	// fleet always names the group; a message without it was not written
	// by fleet, and is no group's to run.
	return fleetHeader(m.Headers, HeaderConsumerGroup) == p.e.cfg.Group
}

// view is what the input limits look at of w's message. On a retry topic
// fleet's own headers are left out: the event passed the limits on its
// source topic, and what fleet added must not push it over them.
func (p *partition) view(w *work) *messageView {
	v := &messageView{size: w.size, key: len(w.msg.Key), headers: len(w.msg.Headers), value: w.msg.Value}
	if p.route.tier > 0 {
		for _, h := range w.msg.Headers {
			if isFleetHeader(h.Key) {
				v.headers--
				v.size -= int64(len(h.Key) + len(h.Value))
			}
		}
	}
	return v
}

// orderKey is what orders w among the partition's events: its message key,
// or for events without one their id, so that redeliveries of one event
// never run at once. Events with neither (undecodable) are not ordered.
func orderKey(w *work) string {
	if w.ev.Key != "" {
		return w.ev.Key
	}
	return w.ev.ID
}

// after is called when w is finished or abandoned, before it is recycled:
// it returns the next event of w's key, which the caller runs next, or nil.
func (p *partition) after(w *work) *work {
	key := orderKey(w)
	if key == "" {
		return nil
	}
	p.keysMu.Lock()
	defer p.keysMu.Unlock()
	next := w.next
	if next == nil {
		// w is the last of its key.
		delete(p.keys, key)
	}
	return next
}

// claimBatch claims until the store answers, failing closed: while it does
// not, no handler runs and no offset moves. Every resend carries the same
// owner tokens, so that a claim whose answer was lost (a timeout) is
// recognised as the same claim rather than orphaned. It reports false if the
// partition drains before the store answers.
func (p *partition) claimBatch(claims []dedupe.Claim) ([]dedupe.ClaimResult, bool) {
	e := p.e
	for attempt := 0; ; attempt++ {
		results, err := e.claim(p.work, claims)
		if err == nil {
			p.claimsAnswered(results)
			return results, true
		}
		if p.work.Err() != nil {
			return nil, false
		}
		e.storeFailed("claim", err)
		wait := backoff(attempt, 50*time.Millisecond, 2*time.Second)
		if p.stopping() {
			// Draining, with the outcome unknown: the claims may hold
			// records. Keep asking, within the drain budget, to learn
			// which, so that the lanes give them back instead of leaving
			// them to expire.
			if !sleep(p.work, wait) {
				return nil, false
			}
			continue
		}
		select {
		case <-p.stop:
		case <-time.After(wait):
		}
	}
}

// claimsAnswered notes an answer of the store to a batch of claims.
func (p *partition) claimsAnswered(results []dedupe.ClaimResult) {
	p.e.storeOK()
	for _, r := range results {
		switch {
		case r.Outcome == dedupe.Busy:
			p.e.m.busy.Inc()
		case r.TakenOver:
			p.e.m.takeovers.Inc()
		}
	}
}

// lane runs events from ready, one at a time; when an event is finished it
// runs the next event of the same key, if one waits, so that one key's
// events run in offset order. Once ready is closed and drained, every
// event was run or abandoned.
func (p *partition) lane() {
	completed := make(chan error, 1)
	for w := range p.ready {
		p.busy.Add(1)
		for w != nil {
			w.completed = completed
			if p.stopping() {
				p.abandon(w)
			} else {
				p.process(w)
			}
			next := p.after(w)
			recycle(w)
			w = next
		}
		p.busy.Add(-1)
	}
}

// process drives one event to a finish: done, duplicate or dead-lettered.
// When the partition drains first, the event is abandoned: its claim is
// released and its offset stays uncommitted, so the next owner runs it.
func (p *partition) process(w *work) {
	e := p.e
	switch w.verdict {
	case "":
	case verdictOtherGroup:
		p.finish(w, OutcomeOtherGroup)
		return
	default:
		p.deadLetter(w, w.verdict, w.verdictErr, 0)
		return
	}
	busyWait := 10 * time.Millisecond
	for {
		switch w.res.Outcome {
		case dedupe.Duplicate:
			p.finish(w, OutcomeDuplicate)
			return

		case dedupe.Invalid:
			p.deadLetter(w, ReasonInvalidRecord, errors.New(w.res.Reason), 0)
			return

		case dedupe.Conflict:
			p.deadLetter(w, ReasonConflict, errors.New("id reused with a different payload: the record of this source and id holds another payload's fingerprint (the first payload stands)"), 0)
			return

		case dedupe.Busy:
			// Someone else holds the event. Ask again right away the first
			// time (the holder may be an earlier event of this very lane),
			// then back off up to the holder's lease.
			if busyWait > 10*time.Millisecond {
				wait := min(busyWait, max(w.res.RetryAfter, 10*time.Millisecond))
				select {
				case <-p.stop:
					p.abandon(w)
					return
				case <-time.After(wait):
				}
			}
			busyWait = min(busyWait*2, time.Second)
			if !p.reclaim(w) {
				p.abandon(w)
				return
			}

		case dedupe.Acquired:
			if w.lost.Load() {
				// Lost while it waited in the lane (a pause, a store that
				// stalled past the lease): ask what became of it.
				p.leases.drop(w)
				if !p.reclaim(w) {
					p.abandon(w)
					return
				}
				continue
			}
			if w.res.Attempts > e.cfg.MaxAttempts {
				p.deadLetter(w, ReasonAttemptsExhausted, errors.New("attempt budget spent before this run"), w.res.Attempts-1)
				return
			}
			if !p.awaitStore() {
				p.abandon(w)
				return
			}
			w.tries++
			err := p.runHandler(w)
			if err == nil {
				switch err = p.complete(w); {
				case err == nil:
					p.finish(w, OutcomeProcessed)
					return
				case errors.Is(err, dedupe.ErrLeaseLost):
					p.leaseLost(w)
				case errors.Is(err, dedupe.ErrInvalid):
					p.deadLetter(w, ReasonInvalidEffect, err, w.res.Attempts)
					return
				default: // drain deadline passed while completing
					p.abandon(w)
					return
				}
			} else if w.lost.Load() {
				p.leaseLost(w)
			}
			if w.lost.Load() {
				// Another owner has the event: ask the store what became of it.
				if !p.reclaim(w) {
					p.abandon(w)
					return
				}
				continue
			}
			if p.work.Err() != nil || p.stopping() {
				p.abandon(w)
				return
			}
			now := time.Now()
			if w.firstFailure.IsZero() {
				w.firstFailure = now
			}
			w.lastFailure = now
			kind := handlers.KindOf(err)
			p.failed(w, "handler failed ("+string(kind)+")", err)
			e.log.Warn("handler failed", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
				"id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "kind", kind, "err", err)
			switch {
			case kind == handlers.KindPermanent:
				p.deadLetter(w, ReasonPermanent, err, w.res.Attempts)
				return
			case kind == handlers.KindUnknownType:
				p.deadLetter(w, ReasonUnknownType, err, w.res.Attempts)
				return
			case w.res.Attempts >= e.cfg.MaxAttempts:
				p.deadLetter(w, ReasonAttemptsExhausted, err, w.res.Attempts)
				return
			case w.tries >= e.cfg.InPlaceAttempts && p.route.tier < len(e.cfg.RetryDelays):
				p.retryLater(w, err)
				return
			case w.tries >= e.cfg.InPlaceAttempts:
				p.deadLetter(w, ReasonAttemptsExhausted, err, w.res.Attempts)
				return
			}
			reason := "error"
			if errors.Is(err, context.DeadlineExceeded) {
				reason = "timeout"
			}
			e.m.retries.WithLabelValues(p.topic, w.typeLabel, reason).Inc()
			p.release(w)
			select {
			case <-p.stop:
				p.abandon(w)
				return
			case <-time.After(backoff(w.res.Attempts-1, e.cfg.RetryBackoff, e.cfg.MaxRetryBackoff)):
			}
			if !p.reclaim(w) {
				p.abandon(w)
				return
			}
		}
	}
}

// awaitStore holds a handler back while the store is known to be down: the
// fleet fails closed, and a run whose completion cannot be recorded would
// only be repeated. It reports false if the partition drains first.
func (p *partition) awaitStore() bool {
	if p.e.storeErr.Load() == nil {
		return true
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for p.e.storeErr.Load() != nil {
		select {
		case <-p.stop:
			return false
		case <-t.C:
		}
	}
	return true
}

// throttle waits until the rate limiter grants w's run. Meanwhile w's lease
// is held and extended like every held claim; it returns an error when the
// lease is lost or the partition's work is cancelled first. A limiter that
// cannot be asked is retried: fleet waits rather than overrun a limit.
func (p *partition) throttle(w *work) error {
	rl := p.e.cfg.RateLimiter
	if rl == nil || !rl.Limited(w.ev.Type) {
		return nil // no context, no round trip
	}
	ctx, cancel := context.WithCancel(p.work)
	p.leases.startRun(w, ctx, cancel)
	defer p.leases.endRun(w)
	var waited time.Duration
	defer func() {
		if waited > 0 {
			p.e.m.throttled.WithLabelValues(w.typeLabel).Add(waited.Seconds())
		}
	}()
	for attempt := 0; ; {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		wait, err := rl.Reserve(rctx, w.ev.Type)
		rcancel()
		switch {
		case err == nil && wait == 0:
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.e.storeFailed("rate_limit", err)
			wait = backoff(attempt, 50*time.Millisecond, 2*time.Second)
			attempt++
		}
		start := time.Now()
		ok := sleep(ctx, wait)
		waited += time.Since(start)
		if !ok {
			return ctx.Err()
		}
	}
}

// runHandler runs one attempt under the lease, which the heartbeat extends;
// a lost lease cancels the attempt's context.
func (p *partition) runHandler(w *work) error {
	e := p.e
	if err := p.throttle(w); err != nil {
		return err
	}
	if d := e.cfg.HandlerTimeout; d > 0 {
		w.ctx, w.cancel = context.WithTimeout(p.work, d)
	} else {
		w.ctx, w.cancel = context.WithCancel(p.work)
	}
	w.tx = handlers.NewTx(w.claim.Identity(), w.lease.Fence, w.res.Attempts)
	p.leases.startRun(w, w.ctx, w.cancel)
	if w.lost.Load() {
		// Lost between the claim and now (throttled, or waiting for the
		// store): the handler must not start under it.
		p.leases.endRun(w)
		return dedupe.ErrLeaseLost
	}
	w.ran = true
	start := time.Now()
	err := e.handler.Handle(w.ctx, w.ev, w.tx)
	e.m.handlerTime.WithLabelValues(w.typeLabel).Observe(time.Since(start).Seconds())
	p.leases.endRun(w)
	return err
}

// complete hands the run's effects to the engine's group commit and waits
// for the answer. The claim stays held (extended) meanwhile; the caller
// drops it.
func (p *partition) complete(w *work) error {
	if w.lost.Load() {
		return dedupe.ErrLeaseLost
	}
	// Not w.ctx: its deadline bounds the handler, not the completion. A lease
	// lost meanwhile makes the store refuse the completion.
	select {
	case p.e.completions <- w:
	case <-p.work.Done():
		return p.work.Err()
	}
	err := <-w.completed
	if err != nil && w.lost.Load() {
		// The heartbeat found the lease lost while the completion waited.
		return dedupe.ErrLeaseLost
	}
	return err
}

// leaseLost records a run whose lease was taken: its completion was refused
// (or never sent), so if its handler had external effects they may happen
// twice. Ledger-style effects are safe: they only apply with a fenced
// completion.
func (p *partition) leaseLost(w *work) {
	w.lost.Store(true)
	p.leases.drop(w)
	p.e.m.leaseLost.Inc()
	p.failed(w, "lease lost", dedupe.ErrLeaseLost)
	p.e.log.Warn("lease lost: another owner took the event over", "topic", p.topic, "partition", p.id,
		"offset", w.msg.Offset, "id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "fence", w.lease.Fence)
}

// reclaim claims w again, until the store answers. It reports false when the
// partition drains first.
func (p *partition) reclaim(w *work) bool {
	// A new claim attempt, a new owner token; claimBatch resends this one
	// with the same token until the store answers.
	w.claim.Owner = p.e.owners.Next()
	results, ok := p.claimBatch([]dedupe.Claim{w.claim})
	if !ok {
		return false
	}
	p.claimed(w, results[0])
	return true
}

// claimed takes the store's answer to w's claim: an acquired claim is held
// (its lease extended) from now on, and no handler has run under it yet.
func (p *partition) claimed(w *work, res dedupe.ClaimResult) {
	w.res = res
	if res.Outcome != dedupe.Acquired {
		return
	}
	w.lease, w.ran = res.Lease, false
	w.lost.Store(false)
	p.leases.hold(w)
}

// release gives the claim back so that the next attempt runs the handler: a
// claim whose handler never ran gives its attempt back too (Unclaim). A
// failure is logged only, since the lease then expires by itself.
func (p *partition) release(w *work) {
	if w.lease.Owner == "" {
		return
	}
	p.leases.drop(w)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.work), 2*time.Second)
	defer cancel()
	start := time.Now()
	var err error
	if w.ran {
		err = p.e.store.Release(ctx, w.lease)
	} else {
		err = p.e.store.Unclaim(ctx, w.lease)
	}
	p.e.m.storeTime.WithLabelValues("release").Observe(time.Since(start).Seconds())
	w.lease = dedupe.Lease{}
	switch {
	case err == nil, errors.Is(err, dedupe.ErrLeaseLost):
	default:
		p.e.storeFailed("release", err)
		p.e.log.Warn("release claim: its lease will expire instead", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
			"id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "err", err)
	}
}

// deadLetter writes w to the dead-letter topic of its source, releases its
// claim and finishes it. The write is retried until acknowledged, the dead
// letter losing its value, then its original headers, then its key while it
// is too large for the topic (HeaderDropped says so); if the partition drains
// first, the event is abandoned instead (and not committed).
func (p *partition) deadLetter(w *work, reason string, cause error, attempts int) {
	msg := deadLetterMessage(&w.msg, p.route, p.failure(w, reason, cause, attempts))
	if p.publish(w, msg, true) != written {
		p.abandon(w)
		return
	}
	p.e.m.deadLetters.WithLabelValues(p.route.source, reason).Inc()
	p.failed(w, "dead-lettered ("+reason+")", cause)
	p.e.log.Warn("dead-lettered", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
		"id", w.ev.ID, "type", w.ev.Type, "reason", reason, "attempt", attempts, "err", cause)
	p.release(w)
	if reason == ReasonConflict {
		p.finish(w, OutcomeConflict)
		return
	}
	p.finish(w, OutcomeDeadLettered)
}

// retryLater writes w to the next retry tier, due after that tier's delay,
// releases its claim (the attempt count stays in the record) and finishes
// it here. An event too large for the retry topic is dead-lettered instead;
// if the partition drains before the write is acknowledged, the event is
// abandoned.
func (p *partition) retryLater(w *work, cause error) {
	e := p.e
	n := p.route.tier + 1
	notBefore := time.Now().Add(e.cfg.RetryDelays[n-1])
	msg := retryMessage(&w.msg, p.route, p.failure(w, ReasonRetryable, cause, w.res.Attempts), n, notBefore)
	switch p.publish(w, msg, false) {
	case written:
	case tooLargeToWrite:
		p.deadLetter(w, ReasonRetryTooLarge, fmt.Errorf("too large for %s: %w", msg.Topic, cause), w.res.Attempts)
		return
	default:
		p.abandon(w)
		return
	}
	e.m.retryTopics.WithLabelValues(p.route.source, strconv.Itoa(n)).Inc()
	e.log.Info("sent to retry topic", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
		"id", w.ev.ID, "type", w.ev.Type, "retry_topic", msg.Topic, "attempt", w.res.Attempts, "not_before", notBefore, "err", cause)
	p.release(w)
	p.finish(w, OutcomeRetried)
}

func (p *partition) failure(w *work, reason string, cause error, attempts int) failure {
	now := time.Now()
	if w.firstFailure.IsZero() {
		w.firstFailure = now
	}
	if w.lastFailure.IsZero() {
		w.lastFailure = now
	}
	return failure{group: p.e.cfg.Group, identity: w.claim.Identity(), reason: reason, cause: cause, attempts: attempts,
		first: w.firstFailure, last: w.lastFailure}
}

// writeResult is how a publish ended.
type writeResult int

const (
	written writeResult = iota
	tooLargeToWrite
	cancelled
)

// publish writes msg until it is acknowledged. A message too large for its
// topic is shrunk when shrinkable allows (see shrink), and reported
// otherwise; any other refusal is retried with backoff. It reports cancelled
// if the partition's work is cancelled first.
func (p *partition) publish(w *work, msg kafka.Message, shrinkable bool) writeResult {
	e := p.e
	for attempt := 0; ; attempt++ {
		err := e.dlq.WriteMessages(p.work, msg)
		if err == nil {
			return written
		}
		if tooLarge(err) {
			if !shrinkable {
				return tooLargeToWrite
			}
			if smaller, ok := shrink(msg); ok {
				e.log.Warn("too large for "+msg.Topic+": written without "+fleetHeader(smaller.Headers, HeaderDropped), "topic", p.topic,
					"partition", p.id, "offset", w.msg.Offset, "id", w.ev.ID, "type", w.ev.Type)
				msg = smaller
				attempt--
				continue
			}
		}
		e.m.publishError.WithLabelValues(msg.Topic).Inc()
		p.failed(w, "write to "+msg.Topic, err)
		e.log.Error("write to "+msg.Topic, "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
			"id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "err", err)
		if p.work.Err() != nil || !sleep(p.work, backoff(attempt, 100*time.Millisecond, 5*time.Second)) {
			return cancelled
		}
	}
}

// finish marks w's offset done.
func (p *partition) finish(w *work, outcome string) {
	e := p.e
	e.m.finished.WithLabelValues(p.topic, w.typeLabel, outcome).Inc()
	if !w.msg.Time.IsZero() {
		e.m.latency.Observe(time.Since(w.msg.Time).Seconds())
	}
	p.wm.finish(w.msg.Offset)
	if e.cfg.OnFinish != nil {
		e.cfg.OnFinish(&w.msg, outcome)
	}
	p.free(w)
}

// abandon gives w up without finishing it: its offset stays uncommitted and
// its claim, if any, is released for the next owner.
func (p *partition) abandon(w *work) {
	p.release(w)
	p.free(w)
}

// free ends w's time in flight: its claim is no longer held, its slot and
// bytes are given back.
func (p *partition) free(w *work) {
	p.leases.drop(w)
	p.e.m.inFlight.Dec()
	p.bytes.give(w.size)
	<-p.slots
}

// recycle puts w back into the pool once nothing refers to it any more.
func recycle(w *work) {
	*w = work{}
	workPool.Put(w)
}

// workPool recycles work items, the largest allocation per event.
var workPool = sync.Pool{New: func() any { return new(work) }}
