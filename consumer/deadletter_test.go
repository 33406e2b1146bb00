package consumer

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestShrink: a dead letter too large for its topic loses its value, then
// its original headers, then its key, saying so in fleet-dropped; fleet's
// own headers always stay, so the dead letter still says where the original
// is.
func TestShrink(t *testing.T) {
	own := kafka.Header{Key: HeaderOriginalOffset, Value: []byte("41")}
	orig := kafka.Header{Key: "ce_id", Value: []byte("x")}
	m := kafka.Message{Topic: "t.dlq", Partition: 3, Key: []byte("k"), Value: []byte("v"), Headers: []kafka.Header{orig, own}}
	steps := []struct {
		dropped             string
		key, value, headers bool
	}{
		{"value", true, false, true},
		{"value,headers", true, false, false},
		{"value,headers,key", false, false, false},
	}
	for _, s := range steps {
		var ok bool
		if m, ok = shrink(m); !ok {
			t.Fatalf("nothing left to drop before %s", s.dropped)
		}
		if got := fleetHeader(m.Headers, HeaderDropped); got != s.dropped {
			t.Errorf("fleet-dropped %q, want %q", got, s.dropped)
		}
		if (len(m.Key) > 0) != s.key || (len(m.Value) > 0) != s.value || hasOriginalHeaders(m.Headers) != s.headers {
			t.Errorf("after dropping %s: key %q, value %q, headers %v", s.dropped, m.Key, m.Value, m.Headers)
		}
		if fleetHeader(m.Headers, HeaderOriginalOffset) != "41" || m.Partition != 3 || m.Topic != "t.dlq" {
			t.Errorf("after dropping %s the origin is lost: %+v", s.dropped, m)
		}
	}
	if _, ok := shrink(m); ok {
		t.Error("shrank a dead letter with nothing left to drop")
	}
	// A value-less message starts with its headers.
	bare := kafka.Message{Key: []byte("k"), Headers: []kafka.Header{orig}}
	if got, _ := shrink(bare); fleetHeader(got.Headers, HeaderDropped) != "headers" {
		t.Errorf("value-less message: dropped %q first, want headers", fleetHeader(got.Headers, HeaderDropped))
	}
}

// TestFleetHeaders: fleet's own headers are told apart whatever their
// case, and read only in fleet's spelling.
func TestFleetHeaders(t *testing.T) {
	for name, want := range map[string]bool{"fleet-not-before": true, "FLEET-NOT-BEFORE": true, "Fleet-Consumer-Group": true,
		"fleet-": true, "fleet": false, "ce_id": false, "xfleet-a": false} {
		if got := isFleetHeader(name); got != want {
			t.Errorf("isFleetHeader(%q) = %v, want %v", name, got, want)
		}
	}
	hs := []kafka.Header{{Key: "FLEET-CONSUMER-GROUP", Value: []byte("forged")}, {Key: HeaderConsumerGroup, Value: []byte("ours")}}
	if got := fleetHeader(hs, HeaderConsumerGroup); got != "ours" {
		t.Errorf("fleetHeader = %q, want the exact spelling's value", got)
	}
}

// TestNotBefore: a retry message waits for its fleet-not-before time, but
// never longer than its tier's delay after it was written or after now, and
// only fleet's own spelling of the header counts.
func TestNotBefore(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	tests := []struct {
		name    string
		header  string
		value   string
		written time.Time
		delay   time.Duration
		want    time.Time
		ok      bool
	}{
		{"due in the tier's delay", HeaderNotBefore, at(5 * time.Second), now, 10 * time.Second, now.Add(5 * time.Second), true},
		{"already due", HeaderNotBefore, at(-time.Minute), now.Add(-2 * time.Minute), 10 * time.Second, now.Add(-110 * time.Second), true},
		{"far future, capped by the write time", HeaderNotBefore, "2099-01-01T00:00:00Z", now.Add(-3 * time.Second), 10 * time.Second, now.Add(7 * time.Second), true},
		{"far future with a future timestamp, capped by now", HeaderNotBefore, "2099-01-01T00:00:00Z", now.Add(time.Hour), 10 * time.Second, now.Add(10 * time.Second), true},
		{"no timestamp, capped by now", HeaderNotBefore, at(time.Hour), time.Time{}, time.Minute, now.Add(time.Minute), true},
		{"no delay to wait", HeaderNotBefore, at(time.Hour), now, 0, now, true},
		{"another spelling is not fleet's", "FLEET-NOT-BEFORE", at(time.Hour), now, time.Minute, time.Time{}, false},
		{"unreadable", HeaderNotBefore, "tomorrow", now, time.Minute, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := kafka.Message{Time: tt.written, Headers: []kafka.Header{{Key: tt.header, Value: []byte(tt.value)}}}
			got, ok := notBefore(&m, tt.delay, now)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("notBefore = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
