package consumer

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/fetch"
)

func TestDrowsy(t *testing.T) {
	cfg := DefaultConfig()
	after := sleepAfter(cfg)
	now := time.Now()
	tests := []struct {
		name      string
		fetched   int
		inFlight  bool
		lastFetch time.Time
		due       time.Time
		want      bool
		wakeAt    bool
	}{
		{"nothing for a while", 0, false, now.Add(-2 * after), time.Time{}, true, false},
		{"a message lately", 0, false, now.Add(-after / 2), time.Time{}, false, false},
		{"fetched, not collected", 1, false, now.Add(-2 * after), time.Time{}, false, false},
		{"in flight", 0, true, now.Add(-2 * after), time.Time{}, false, false},
		{"a retry message due later", 0, false, now, now.Add(10 * after), true, true},
		{"a retry message due soon", 0, false, now.Add(-2 * after), now.Add(after / 2), false, false},
		{"in flight before a retry message", 0, true, now, now.Add(10 * after), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &partition{e: &Engine{cfg: cfg}, wm: newWatermark(0)}
			if tt.inFlight {
				p.wm.add(0, 0, 0)
			}
			p.lastFetch.Store(tt.lastFetch.UnixNano())
			if !tt.due.IsZero() {
				p.dueAt.Store(tt.due.UnixNano())
			}
			if got := p.drowsy(tt.fetched); got != tt.want {
				t.Fatalf("drowsy = %v, want %v", got, tt.want)
			}
			if tt.want && tt.wakeAt != !p.wakeAt.IsZero() {
				t.Errorf("wake at %v: want a wake time %v", p.wakeAt, tt.wakeAt)
			}
			if tt.wakeAt && !p.wakeAt.Equal(time.Unix(0, tt.due.UnixNano())) {
				t.Errorf("wake at %v, want the message's due time %v", p.wakeAt, tt.due)
			}
		})
	}
}

func TestReadable(t *testing.T) {
	tests := []struct {
		name                string
		next, hwm, logStart int64
		code                kafka.Error
		want                bool
	}{
		{"written to", 5, 6, 0, 0, true},
		{"at its end", 5, 5, 0, 0, false},
		{"retention deleted the next offset", 5, -1, 9, kafka.OffsetOutOfRange, true},
		{"next offset past the end", 50, -1, 0, kafka.OffsetOutOfRange, false},
		{"log start unknown", 5, -1, -1, kafka.OffsetOutOfRange, false},
		{"leader moved", 5, -1, -1, kafka.NotLeaderForPartition, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readable(tt.next, tt.hwm, tt.logStart, int16(tt.code)); got != tt.want {
				t.Errorf("readable = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAnswered takes the watcher's answers for a sleeping partition: the
// end it learns, and where a partition without a committed offset starts.
func TestAnswered(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	newP := func(start int64) *partition {
		p := &partition{wm: newWatermark(start), lag: m.lag.WithLabelValues("t", "0")}
		p.hwm.Store(-1)
		return p
	}
	p := newP(kafka.FirstOffset)
	if p.answered(fetch.ResponsePartition{ErrorCode: int16(kafka.OffsetOutOfRange), HighWatermark: -1, LogStartOffset: 30}) {
		t.Error("woken by an answer that only tells where its log starts")
	}
	if got := p.wm.commitOffset(); got != 30 {
		t.Errorf("starts at %d, want the log's start 30", got)
	}
	if !p.answered(fetch.ResponsePartition{HighWatermark: 31, LogStartOffset: 30}) || p.hwm.Load() != 31 {
		t.Errorf("not woken by a message at its start (end %d)", p.hwm.Load())
	}
	if p = newP(kafka.FirstOffset); !p.answered(fetch.ResponsePartition{HighWatermark: 2}) {
		t.Error("a partition starting at the first offset of a log from 0 not woken by its messages")
	}
	if p = newP(12); p.answered(fetch.ResponsePartition{HighWatermark: 12}) || p.hwm.Load() != 12 {
		t.Errorf("woken at its end, or its end %d not kept", p.hwm.Load())
	}
}
