package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestInputLimits sends a message over each input limit between valid
// events: each goes to the dead-letter topic with its reason, and the
// partition goes on.
func TestInputLimits(t *testing.T) {
	e := newEnv(t, 1)
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router, configure: func(c *consumer.Config) {
		c.MaxMessageBytes, c.MaxHeaders, c.MaxJSONDepth = 4096, 16, 8
	}})
	big := payment("big", "acct-1", ledger.TypeCaptured, 1)
	big.Value = []byte(`{"account":"acct-1","amount_cents":1,"pad":"` + strings.Repeat("x", 5000) + `"}`)
	many := payment("many", "acct-1", ledger.TypeCaptured, 1)
	for i := range 20 {
		many.Headers = append(many.Headers, kafka.Header{Key: fmt.Sprintf("x-%d", i), Value: []byte("v")})
	}
	deep := payment("deep", "acct-1", ledger.TypeCaptured, 1)
	deep.Value = []byte(`{"account":"acct-1","amount_cents":1,"x":` + strings.Repeat("[", 50) + strings.Repeat("]", 50) + `}`)
	// Brackets inside strings are no nesting.
	shallow := payment("shallow", "acct-1", ledger.TypeCaptured, 3)
	shallow.Value = []byte(`{"account":"acct-1","amount_cents":3,"note":"` + strings.Repeat("[{", 40) + `"}`)
	e.publish(payment("ok-1", "acct-1", ledger.TypeCaptured, 10), big, many, deep, shallow, payment("ok-2", "acct-1", ledger.TypeCaptured, 20))
	waitFor(t, 20*time.Second, "every message finished", func() bool { return en.finished("") == 6 })
	if got := e.balances([]string{"acct-1"})["acct-1"]; got != 33 {
		t.Errorf("balance = %d, want 33: the valid events around the oversized ones apply", got)
	}
	letters := e.dlq(3)
	for i, want := range []struct{ id, reason string }{{"big", consumer.ReasonTooLarge}, {"many", consumer.ReasonTooManyHeaders}, {"deep", consumer.ReasonTooDeep}} {
		m := letters[i]
		if got := headerValue(m, consumer.HeaderErrorKind); got != want.reason || headerValue(m, "ce_id") != want.id {
			t.Errorf("dead letter %d: %s with reason %q (%s), want %s with %s", i, headerValue(m, "ce_id"), got,
				headerValue(m, consumer.HeaderErrorMessage), want.id, want.reason)
		}
	}
}

// TestLongAttributes sends events whose key, id, source, type or subject
// is over its limit: each goes to the dead-letter topic as too_long, and
// what fleet serves about them (/status) stays small, however long they
// were.
func TestLongAttributes(t *testing.T) {
	e := newEnv(t, 1)
	router, _ := newCountingRouter(t, nil)
	var logs syncBuffer
	en := e.start(options{router: router, logs: &logs})
	long := strings.Repeat("x", 100_000)
	set := func(m kafka.Message, header, v string) kafka.Message {
		for i, h := range m.Headers {
			if h.Key == header {
				m.Headers[i].Value = []byte(v)
				return m
			}
		}
		m.Headers = append(m.Headers, kafka.Header{Key: header, Value: []byte(v)})
		return m
	}
	key := payment("long-key", "acct-1", ledger.TypeCaptured, 1)
	key.Key = []byte(long)
	msgs := []kafka.Message{
		payment("ok-1", "acct-1", ledger.TypeCaptured, 10),
		key,
		set(payment("x", "acct-1", ledger.TypeCaptured, 1), "ce_id", long),
		set(payment("long-source", "acct-1", ledger.TypeCaptured, 1), "ce_source", long),
		set(payment("long-type", "acct-1", ledger.TypeCaptured, 1), "ce_type", long),
		set(payment("long-subject", "acct-1", ledger.TypeCaptured, 1), "ce_subject", long),
		payment("ok-2", "acct-1", ledger.TypeCaptured, 20),
	}
	e.publish(msgs...)
	waitFor(t, 20*time.Second, "every message finished", func() bool { return en.finished("") == len(msgs) })
	if got := e.balance("acct-1"); got != 30 {
		t.Errorf("balance = %d, want 30", got)
	}
	for i, m := range e.dlq(5) {
		if got := headerValue(m, consumer.HeaderErrorKind); got != consumer.ReasonTooLong {
			t.Errorf("dead letter %d: reason %q (%s), want too_long", i, got, headerValue(m, consumer.HeaderErrorMessage))
		}
	}
	st, err := json.Marshal(en.Status())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) > 16<<10 {
		t.Errorf("/status is %d bytes after five events with 100 kB attributes: what one event makes fleet serve must be bounded", len(st))
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 4<<10 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
	if !strings.Contains(logs.String(), "too_long") {
		t.Error("no log line for the dead letters")
	}
	keys, err := e.rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if len(k) > 300 {
			t.Errorf("a Redis key of %d bytes: an event over the limits reached the store", len(k))
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the engine's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
