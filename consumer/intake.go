package consumer

import (
	"context"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// fetch reads messages into deliveries on fetched until ctx is cancelled.
// Errors are counted, logged and retried (kafkaRetry).
func (p *partition) fetch(ctx context.Context, r *partitionReader, fetched chan<- *delivery) {
	read := r.next
	failed := p.fetchFailed
	for {
		m, err := retry(ctx, kafkaRetry, read, failed)
		if err != nil {
			return
		}
		if p.watch != nil { // only a partition that sleeps asks when (drowsy)
			p.lastFetch.Store(time.Now().UnixNano())
		}
		// Backpressure: the bytes of the messages queued here and in flight
		// are capped; a message over the budget waits until it fits, or
		// goes alone when nothing else is held.
		size := messageSize(&m)
		if !p.bytes.take(size, ctx.Done()) {
			return
		}
		d := deliveryPool.Get().(*delivery)
		d.msg, d.p, d.size = m, p, size
		// A retry topic's partition waits, fetching nothing more, until its
		// next event of this group is due: they are in due order, since one
		// tier has one delay per group. Other groups' messages (retry topics
		// are per source topic) are only acknowledged, so they never make
		// this group wait. Other partitions and topics go on meanwhile.
		if p.route.tier > 0 && p.ours(&d.msg) && !p.due(ctx, &d.msg) {
			return
		}
		// The worker's slot: fetched and in flight, its partitions hold at
		// most WorkerMaxInFlight events. A delivery never sent gives it back;
		// one left in fetched at the end of the session, dropFetched.
		if !p.e.slots.take(ctx.Done()) {
			return
		}
		select {
		case fetched <- d:
		case <-ctx.Done():
			p.e.slots.give()
			return
		}
	}
}

// dropFetched drops the deliveries fetched and not collected when a session
// ends, once its fetcher has returned, and gives their slots back to the
// worker: they are not in the watermark, so the next session or owner
// reads them again.
func (p *partition) dropFetched(fetched <-chan *delivery) {
	for len(fetched) > 0 {
		<-fetched
		p.e.slots.give()
	}
}

// fetchFailed records a fetch that failed.
func (p *partition) fetchFailed(err error) {
	p.e.m.fetchErrors.WithLabelValues(p.topic).Inc()
	part := p.id
	p.e.errors.add(ErrorEntry{Time: time.Now().UTC(), What: "fetch", Topic: p.topic, Partition: &part, Error: err.Error()})
	p.e.log.Warn("fetch", "topic", p.topic, "partition", p.id, "err", err)
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
	p.dueAt.Store(t.UnixNano())
	defer func() {
		p.dueAt.Store(0)
		p.waiting.Store(0)
	}()
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

// collected is how collect ended.
type collected int

const (
	// batchReady: the batch holds at least one delivery.
	batchReady collected = iota
	// draining: the generation drains; the batch is empty.
	draining
	// asleep: a partition that sleeps between sessions has nothing to do
	// (see drowsy); the batch is empty.
	asleep
)

// collect waits for the next batch: one message, then whatever else is
// already fetched, up to BatchSize and the in-flight cap. While it waits for
// the first, idle (nil for a partition that never sleeps) ticks: at each
// tick, a drowsy partition falls asleep.
func (p *partition) collect(fetched <-chan *delivery, batch *[]*delivery, idle <-chan time.Time) collected {
	if c := p.first(fetched, batch, idle); c != batchReady {
		return c
	}
	for len(*batch) < cap(*batch) {
		// Backpressure: a slot per in-flight event.
		select {
		case p.slots <- struct{}{}:
		default:
			return batchReady
		}
		select {
		case d := <-fetched:
			*batch = append(*batch, d)
		default:
			<-p.slots
			return batchReady
		}
	}
	return batchReady
}

// first waits for the batch's first delivery, and its slot.
func (p *partition) first(fetched <-chan *delivery, batch *[]*delivery, idle <-chan time.Time) collected {
	select {
	case p.slots <- struct{}{}:
	case <-p.drain.stopping.Done():
		return draining
	}
	for {
		select {
		case d := <-fetched:
			*batch = append(*batch, d)
			return batchReady
		case <-p.drain.stopping.Done():
			<-p.slots
			return draining
		case <-idle:
			if p.drowsy(len(fetched)) {
				<-p.slots
				return asleep
			}
		}
	}
}
