package consumer_test

import (
	"fmt"
	"strings"
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
