package consumer

import (
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// A partition of a retry tier or of a parked topic sleeps while it has
// nothing to read: a worker is assigned as many of them as it has source
// partitions, times the tiers and the parked topic, and most of them are
// empty most of the time. A sleeping partition holds no reader, goroutine
// or buffer; the generation's watcher (watch.go) starts its next session
// when something is written to it, or when the retry message it slept on
// is due.

// nap is what a partition that sleeps between sessions keeps.
type nap struct {
	// watch is the generation's watcher; nil for a source partition,
	// which never sleeps. asleep is true while the partition sleeps.
	watch  *watcher
	asleep atomic.Bool
	// lastFetch is when the session's fetcher last got a message, and
	// dueAt the not-before time of the retry message it waits for (0:
	// none), in unix nanoseconds.
	lastFetch, dueAt atomic.Int64
	// wakeAt is when a partition asleep on a retry message must wake
	// (zero: when something is written to it), and sleptOn and
	// sleptOnTime that message's offset and timestamp. The partition's
	// session sets them before it falls asleep; the watcher reads them
	// after.
	wakeAt               time.Time
	sleptOn, sleptOnTime int64
}

// sleepAfter is how long a session waits for a message before its
// partition falls asleep, and how much longer than that a retry message
// must wait for its time for its partition to sleep meanwhile: a few fetch
// waits, so that a partition that is written to steadily keeps its reader.
func sleepAfter(cfg Config) time.Duration { return 4 * cfg.MaxWait }

// drowsy reports whether the session of a partition that sleeps between
// sessions has nothing to do: nothing in flight and nothing fetched, and
// its fetcher either has waited sleepAfter for a message, or waits for a
// retry message that is due more than sleepAfter from now (the partition
// then sleeps until it is due: p.wakeAt). A message fetched meanwhile is
// dropped with the session; it is not in the watermark, so the next
// session reads it again.
func (p *partition) drowsy(fetched int) bool {
	if fetched > 0 || p.wm.inFlight() > 0 {
		return false
	}
	now := time.Now()
	if due := p.dueAt.Load(); due != 0 {
		t := time.Unix(0, due)
		if t.Sub(now) <= sleepAfter(p.e.cfg) {
			return false
		}
		p.wakeAt, p.sleptOn, p.sleptOnTime = t, p.waitingOffset.Load(), p.waiting.Load()
		return true
	}
	p.wakeAt = time.Time{}
	return now.Sub(time.Unix(0, p.lastFetch.Load())) >= sleepAfter(p.e.cfg)
}

// fellAsleep marks p asleep and keeps, for /status and the lag, the retry
// message it waits for, as its fetcher showed it while it waited.
func (p *partition) fellAsleep() {
	if !p.wakeAt.IsZero() {
		p.waitingOffset.Store(p.sleptOn)
		p.waiting.Store(p.sleptOnTime)
	}
	p.asleep.Store(true)
}

// awake marks p awake when its next session starts, and forgets the retry
// message: the session's fetcher shows it again while it waits.
func (p *partition) awake() {
	p.waiting.Store(0)
	p.asleep.Store(false)
}

// readable reports whether a sleeping partition whose next offset is next
// has something to read, by a fetch's answer for it (its error code, high-
// water mark and log start): its high-water mark is past next, or next is
// before the log's start (retention deleted it: the reader then skips to
// the first offset there is). A partition whose next offset is past its
// end (a topic made again) waits, as a reader would, until the end passes
// it.
func readable(next, hwm, logStart int64, code int16) bool {
	switch kafka.Error(code) {
	case 0:
		return hwm > next
	case kafka.OffsetOutOfRange:
		return logStart >= 0 && next < logStart
	}
	return false
}
