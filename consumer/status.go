package consumer

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Status is a snapshot of what an engine is doing, for /status and `fleet
// status`.
type Status struct {
	Group      string `json:"group"`
	Member     string `json:"member,omitempty"`
	Generation int32  `json:"generation,omitempty"`
	// Joined is true while the engine is a member of a generation.
	Joined bool `json:"joined"`
	// NotReady is why the engine is not ready, or empty.
	NotReady   string            `json:"not_ready,omitempty"`
	InFlight   int               `json:"in_flight"`
	Partitions []PartitionStatus `json:"partitions"`
	// LastErrors are the most recent failures, newest first.
	LastErrors []ErrorEntry `json:"last_errors"`
	// Gates are the group's gated keys as last read (absent until the
	// first read).
	Gates *GateStatus `json:"gates,omitempty"`
}

// PartitionStatus is one assigned partition.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	// Committed is the offset last committed in this generation (-1: none
	// yet); Next is the offset that would be committed now (-1: unknown
	// until the first fetch).
	Committed int64 `json:"committed"`
	Next      int64 `json:"next"`
	// HighWaterMark is the partition's end as of the last fetch (-1 before
	// the first), and Lag the messages between Next and it.
	HighWaterMark int64 `json:"high_water_mark"`
	Lag           int64 `json:"lag"`
	InFlight      int   `json:"in_flight"`
	// OldestInFlightSeconds is how long the oldest unfinished event has been
	// in flight; TimeLagSeconds how old its message is (now minus its Kafka
	// timestamp). Both are 0 when nothing is in flight.
	OldestInFlightSeconds float64 `json:"oldest_in_flight_seconds"`
	TimeLagSeconds        float64 `json:"time_lag_seconds"`
	// Asleep is true while a partition of a retry tier or parked topic has
	// nothing to read: it holds no reader until something is written to it
	// or the retry message it waits for is due.
	Asleep bool `json:"asleep,omitempty"`
}

// ErrorEntry is one failure the engine met.
type ErrorEntry struct {
	Time      time.Time `json:"time"`
	What      string    `json:"what"`
	Topic     string    `json:"topic,omitempty"`
	Partition *int      `json:"partition,omitempty"`
	Offset    *int64    `json:"offset,omitempty"`
	ID        string    `json:"id,omitempty"`
	Type      string    `json:"type,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	Error     string    `json:"error"`
}

// errorRing keeps the last failures.
type errorRing struct {
	mu      sync.Mutex
	entries []ErrorEntry
	next    int
	full    bool
}

const errorRingSize = 20

func (r *errorRing) add(e ErrorEntry) {
	e.Error = truncate(e.Error, 512)
	e.ID, e.Type = clip(e.ID), clip(e.Type)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.entries == nil {
		r.entries = make([]ErrorEntry, errorRingSize)
	}
	r.entries[r.next] = e
	r.next = (r.next + 1) % errorRingSize
	if r.next == 0 {
		r.full = true
	}
}

// newestFirst returns the entries, newest first.
func (r *errorRing) newestFirst() []ErrorEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = errorRingSize
	}
	out := make([]ErrorEntry, 0, n)
	for i := range n {
		out = append(out, r.entries[(r.next-1-i+errorRingSize)%errorRingSize])
	}
	return out
}

// failed records a failure of an event for /status.
func (p *partition) failed(d *delivery, what string, err error) {
	part, off := p.id, d.msg.Offset
	e := ErrorEntry{Time: time.Now().UTC(), What: what, Topic: p.topic, Partition: &part, Offset: &off,
		ID: d.ev.ID, Type: d.ev.Type, Attempt: d.attempt.res.Attempts}
	if err != nil {
		e.Error = err.Error()
	}
	p.e.errors.add(e)
}

// Status returns a snapshot of the engine.
func (e *Engine) Status() Status {
	s := Status{Group: e.cfg.Group, Joined: e.joined.Load(), Partitions: []PartitionStatus{}, LastErrors: e.errors.newestFirst(),
		Gates: e.gateStatus.Load()}
	if g := e.gen.Load(); g != nil {
		s.Member, s.Generation = g.member, g.id
	}
	if err := e.Ready(); err != nil {
		s.NotReady = err.Error()
	}
	now := time.Now()
	for _, p := range e.partitions() {
		ps := p.status(now)
		s.InFlight += ps.InFlight
		s.Partitions = append(s.Partitions, ps)
	}
	slices.SortFunc(s.Partitions, func(a, b PartitionStatus) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return s
}

func (p *partition) status(now time.Time) PartitionStatus {
	ps := PartitionStatus{Topic: p.topic, Partition: p.id, Committed: p.committed.Load(),
		Next: p.wm.commitOffset(), HighWaterMark: p.hwm.Load(), Asleep: p.asleep.Load()}
	if ps.Next < 0 {
		ps.Next = -1 // nothing fetched yet from a partition without a committed offset
	}
	if ps.HighWaterMark >= 0 && ps.Next >= 0 {
		ps.Lag = max(ps.HighWaterMark-ps.Next, 0)
	}
	if added, ts, n, ok := p.wm.oldest(); ok {
		ps.InFlight = n
		ps.OldestInFlightSeconds = max(now.Sub(time.Unix(0, added)).Seconds(), 0)
		if ts > 0 {
			ps.TimeLagSeconds = max(now.Sub(time.Unix(0, ts)).Seconds(), 0)
		}
	}
	if ts := p.waiting.Load(); ts != 0 {
		// A retry message waiting for its time is not in flight yet, but it
		// is what the partition is behind on.
		ps.Lag = max(ps.Lag, ps.HighWaterMark-p.waitingOffset.Load())
		if ts > 1 {
			ps.TimeLagSeconds = max(ps.TimeLagSeconds, now.Sub(time.Unix(0, ts)).Seconds())
		}
	}
	return ps
}

// generation identifies the current generation.
type generation struct {
	id     int32
	member string
}

// partitions returns the partitions of the current generation.
func (e *Engine) partitions() []*partition {
	if ps := e.parts.Load(); ps != nil {
		return *ps
	}
	return nil
}

// statusCollector exposes the per-partition ages of an engine at scrape
// time.
type statusCollector struct {
	e                                    *Engine
	timeLag, inFlight, committed, asleep *prometheus.Desc
}

func newStatusCollector(e *Engine) *statusCollector {
	return &statusCollector{
		e: e,
		timeLag: prometheus.NewDesc("fleet_consumer_lag_seconds",
			"Age of the oldest unfinished message of the partition (now minus its Kafka timestamp); 0 when nothing is in flight.",
			[]string{"topic", "partition"}, nil),
		inFlight: prometheus.NewDesc("fleet_consumer_oldest_in_flight_seconds",
			"How long the partition's oldest unfinished event has been in flight; 0 when nothing is.",
			[]string{"topic", "partition"}, nil),
		committed: prometheus.NewDesc("fleet_consumer_committed_offset",
			"The offset last committed for the partition by this worker (absent until its first commit in the generation).",
			[]string{"topic", "partition"}, nil),
		asleep: prometheus.NewDesc("fleet_consumer_partitions_asleep",
			"Assigned partitions of retry tiers and parked topics that have nothing to read, and hold no reader until something is written to them or the retry message they wait for is due.",
			nil, nil),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.timeLag
	ch <- c.inFlight
	ch <- c.committed
	ch <- c.asleep
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	asleep := 0
	for _, p := range c.e.partitions() {
		ps := p.status(now)
		if ps.Asleep {
			asleep++
		}
		part := strconv.Itoa(p.id)
		ch <- prometheus.MustNewConstMetric(c.timeLag, prometheus.GaugeValue, ps.TimeLagSeconds, p.topic, part)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, ps.OldestInFlightSeconds, p.topic, part)
		if ps.Committed >= 0 {
			ch <- prometheus.MustNewConstMetric(c.committed, prometheus.GaugeValue, float64(ps.Committed), p.topic, part)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.asleep, prometheus.GaugeValue, float64(asleep))
}
