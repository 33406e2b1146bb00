package consumer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

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
