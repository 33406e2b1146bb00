package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestKeysHoldAndUnblock runs a worker with --on-dead-letter hold: a
// payment refused for good holds its account, the payment behind it waits,
// fleet keys blocked lists the account with its head, and fleet keys
// unblock lets the waiting payment run.
func TestKeysHoldAndUnblock(t *testing.T) {
	c := newCluster(t, 1)
	lines := `{"id":"bad","type":"payment.captured","key":"acct-h","data":{"account":"acct-h","amount_cents":-5}}
{"id":"good","type":"payment.captured","key":"acct-h","data":{"account":"acct-h","amount_cents":700}}
{"id":"other","type":"payment.captured","key":"acct-o","data":{"account":"acct-o","amount_cents":100}}
`
	path := t.TempDir() + "/payments.jsonl"
	if err := writeFile(path, lines); err != nil {
		t.Fatal(err)
	}
	fleetOut(t, false, "publish", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic, "--source", "shop", "--file", path)
	c.startWorker("a", "--on-dead-letter", "hold")
	ctx := context.Background()
	eventually(t, 60*time.Second, "the other account credited", func() bool {
		return c.rdb.Get(ctx, ledger.BalanceKey("acct-o")).Val() == "100"
	})
	redis := c.redisArgs
	var held []blockedKey
	eventually(t, 30*time.Second, "acct-h held with its payment parked", func() bool {
		held = nil
		for _, line := range strings.Split(strings.TrimSpace(fleetOut(t, false, append([]string{"keys", "blocked", "--json"}, redis...)...)), "\n") {
			var k blockedKey
			if line != "" && json.Unmarshal([]byte(line), &k) == nil {
				held = append(held, k)
			}
		}
		return len(held) == 1 && held[0].Parked == 1
	})
	if k := held[0]; k.Key != "acct-h" || k.Group != "ledger-e2e" || k.Topic != e2eTopic || k.State != "held" || !strings.HasPrefix(k.HeadRecord, "fleet:idem:{acct-h}:") {
		t.Fatalf("held key: %+v", k)
	}
	if got := c.rdb.Get(ctx, ledger.BalanceKey("acct-h")).Val(); got != "" {
		t.Fatalf("acct-h balance %q while held, want none", got)
	}
	if table := fleetOut(t, false, append([]string{"keys", "blocked"}, redis...)...); !strings.Contains(table, "acct-h") || !strings.Contains(table, "held") {
		t.Errorf("table:\n%s", table)
	}
	if msg := fleetOut(t, true, append([]string{"keys", "unblock", "acct-o", "--brokers", strings.Join(c.brokers, ",")}, redis...)...); !strings.Contains(msg, "acct-o is not held") {
		t.Errorf("unblock of a key not held: %s", msg)
	}
	out := fleetOut(t, false, append([]string{"keys", "unblock", "acct-h", "--by", "ada", "--brokers", strings.Join(c.brokers, ",")}, redis...)...)
	if !strings.Contains(out, "unblocked acct-h") || !strings.Contains(out, "by ada") {
		t.Errorf("unblock: %s", out)
	}
	eventually(t, 60*time.Second, "the parked payment run", func() bool {
		return c.rdb.Get(ctx, ledger.BalanceKey("acct-h")).Val() == "700"
	})
	if out := fleetOut(t, false, append([]string{"keys", "blocked", "--all"}, redis...)...); strings.Contains(out, "acct-h") {
		t.Errorf("acct-h still listed once drained:\n%s", out)
	}
}
