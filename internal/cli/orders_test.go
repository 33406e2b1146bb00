package cli

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/orders"
)

// TestOrders publishes an order's lifecycle with fleet publish, a resend
// and an impossible transition, to a fleet consuming payments and orders:
// the view in Redis is exact and the impossible event is a dead letter
// naming the states.
func TestOrders(t *testing.T) {
	c := newCluster(t, 2)
	lines := `{"id":"o1-created","type":"order.created","key":"o-1","data":{"order_id":"o-1","customer":"ada","total_cents":4200}}
{"id":"o1-paid","type":"order.paid","key":"o-1","data":{"order_id":"o-1"}}
{"id":"o1-paid","type":"order.paid","key":"o-1","data":{"order_id":"o-1"}}
{"id":"o1-shipped","type":"order.shipped","key":"o-1","data":{"order_id":"o-1"}}
{"id":"o1-cancel","type":"order.cancelled","key":"o-1","data":{"order_id":"o-1"}}
`
	path := t.TempDir() + "/orders.jsonl"
	if err := writeFile(path, lines); err != nil {
		t.Fatal(err)
	}
	fleetOut(t, false, "publish", "--brokers", strings.Join(c.brokers, ","), "--topic", "orders", "--source", "shop", "--file", path)
	c.startWorker("a", "--topics", "orders") // added to startWorker's payments
	eventually(t, 60*time.Second, "the order shipped", func() bool {
		return c.rdb.HGet(context.Background(), orders.ViewKey("o-1"), "status").Val() == orders.StatusShipped
	})
	view := c.rdb.HGetAll(context.Background(), orders.ViewKey("o-1")).Val()
	if view["customer"] != "ada" || view["total_cents"] != "4200" || view["paid_at"] == "" || view["shipped_at"] == "" ||
		view["cancelled_at"] != "" || view["last_event"] != "o1-shipped" {
		t.Errorf("view %v", view)
	}
	var letters []deadLetter
	eventually(t, 30*time.Second, "the impossible transition dead-lettered", func() bool {
		letters = nil
		_ = readTopic(context.Background(), c.brokers, nil, consumer.DeadLetterTopic("orders"), func(m kafkaMessage) error {
			letters = append(letters, newDeadLetter(m))
			return nil
		})
		return len(letters) == 1
	})
	if l := letters[0]; l.Event.ID != "o1-cancel" || l.Reason != consumer.ReasonPermanent ||
		!strings.Contains(l.Error, "order.cancelled is impossible when the order is shipped") {
		t.Errorf("dead letter %s: %s %q", l.Event.ID, l.Reason, l.Error)
	}
}

type kafkaMessage = kafka.Message

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
