package consumer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestRetryTooLargeNamesTopicAndCause: an event whose retry message is too
// large is dead-lettered with reason retry_too_large; its error message
// names the retry topic and the handler's error ("too large for <topic>:
// <cause>").
func TestRetryTooLargeNamesTopicAndCause(t *testing.T) {
	e := newEnv(t, 1)
	pad := strings.Repeat("x", 1<<20-1024)
	big := payment("big", "acct-8", ledger.TypeCaptured, 1)
	big.Value = []byte(`{"account":"acct-8","amount_cents":1,"pad":"` + pad + `"}`)
	e.write(e.writerFor(topic, &kafka.Hash{}), big)
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "big" {
			return errDownstream
		}
		return nil
	})
	e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{100 * time.Millisecond}
	}})
	waitFor(t, 20*time.Second, "committed", func() bool { return e.committed("ledger", 1) == 1 })
	m := e.dlq(1)[0]
	msg := headerValue(m, consumer.HeaderErrorMessage)
	t.Logf("%s = %q", consumer.HeaderErrorMessage, msg)
	want := "too large for " + consumer.RetryTopic(topic, 1) + ": " + errDownstream.Error()
	if msg != want {
		t.Errorf("dead letter error message %q, want %q", msg, want)
	}
}
