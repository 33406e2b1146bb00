package redistest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/fleetworks/fleet/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServer(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := srv.Client(t)

	opt, err := redis.ParseURL(srv.URL())
	if err != nil || opt.Addr != srv.Addr() || opt.DB != 0 {
		t.Fatalf("URL %q parses to %+v, %v; want address %s, db 0", srv.URL(), opt, err, srv.Addr())
	}
	if got := c.ConfigGet(ctx, "maxmemory-policy").Val()["maxmemory-policy"]; got != "noeviction" {
		t.Fatalf("maxmemory-policy %q, want noeviction", got)
	}
	if got := c.ConfigGet(ctx, "save").Val()["save"]; got != "" {
		t.Fatalf("save %q, want none", got)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	// Without retries: go-redis would back off between them.
	once := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer once.Close()
	if err := once.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered by a stopped server")
	}
	srv.Stop() // stopping twice does nothing

	srv.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
	if n := c.Exists(ctx, "k").Val(); n != 0 {
		t.Fatal("data survived a restart; the server should start empty")
	}
}

func TestServerArgs(t *testing.T) {
	srv := redistest.Start(t, "--rename-command", "CONFIG", "")
	err := srv.Client(t).ConfigGet(context.Background(), "maxmemory-policy").Err()
	if err == nil {
		t.Fatal("CONFIG answered although it was disabled")
	}
}

func TestServersArePrivate(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	if a.Addr() == b.Addr() || a.Addr() == "127.0.0.1:6379" {
		t.Fatalf("servers share an address: %s, %s", a.Addr(), b.Addr())
	}
}

// TestCluster starts a three-master cluster, writes through a cluster
// client, moves a slot with its keys, and reads everything back.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	rdb := c.Client(t)
	ctx := context.Background()
	for i := range 100 {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	slot := int(rdb.ClusterKeySlot(ctx, "k7").Val())
	before := c.Owner(slot)
	after := c.MoveSlot(slot)
	if after == before || c.Owner(slot) != after {
		t.Fatalf("slot %d: owner %s before, %s after, %s now", slot, before, after, c.Owner(slot))
	}
	for i := range 100 {
		if v, err := rdb.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || v != i {
			t.Fatalf("k%d after the move: %v, %v", i, v, err)
		}
	}
}
