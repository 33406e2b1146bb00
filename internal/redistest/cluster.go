package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters without replicas, each a Server
// started by the test, joined with `redis-cli --cluster create`.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts n cluster-enabled servers (at least 3), creates the
// cluster, spreading the slots over them, and waits until every node says
// the cluster is ok. The servers stop when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redistest: redis-cli is not on the PATH: install it (Debian package redis-tools; .ci/run does)")
	}
	c := &Cluster{t: t}
	var addrs []string
	for range n {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	// #nosec G204 -- redis-cli found on the PATH, with arguments of our own
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitOK()
	return c
}

// waitOK waits until every node reports cluster_state:ok and knows every
// node.
func (c *Cluster) waitOK() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
		for {
			info, err := rdb.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(c.Nodes))) {
				break
			}
			if time.Now().After(deadline) {
				_ = rdb.Close()
				c.t.Fatalf("redistest: cluster not ok after 30s: %v %s", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = rdb.Close()
	}
}

// URL is the cluster in go-redis's cluster URL form:
// redis://host:port?addr=host2:port2&addr=host3:port3.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr()
	for i, s := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + s.Addr()
	}
	return u
}

// Client returns a cluster client, closed when t ends. Like fleet's own
// clients, it honours context deadlines.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	var addrs []string
	for _, s := range c.Nodes {
		addrs = append(addrs, s.Addr())
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// MoveSlot migrates slot, with its keys, from its owner to another node,
// the way redis-cli --cluster reshard does it (IMPORTING and MIGRATING,
// MIGRATE in batches, then SETSLOT NODE everywhere), while clients run:
// they meet ASK during the move and MOVED after it. It returns the new
// owner's address.
func (c *Cluster) MoveSlot(slot int) string {
	c.t.Helper()
	ctx := context.Background()
	clients := map[string]*redis.Client{}
	ids := map[string]string{}
	for _, s := range c.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
		defer rdb.Close()
		id, err := rdb.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			c.t.Fatalf("redistest: cluster myid: %v", err)
		}
		clients[s.Addr()], ids[s.Addr()] = rdb, id
	}
	from := c.Owner(slot)
	var to string
	for _, s := range c.Nodes {
		if s.Addr() != from {
			to = s.Addr()
			break
		}
	}
	src, dst := clients[from], clients[to]
	must := func(err error, what string) {
		if err != nil {
			c.t.Fatalf("redistest: move slot %d: %s: %v", slot, what, err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]).Err(), "importing")
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]).Err(), "migrating")
	host, port, _ := strings.Cut(to, ":")
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		must(err, "getkeysinslot")
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err(), "migrate")
	}
	for _, rdb := range clients {
		must(rdb.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]).Err(), "setslot node")
	}
	c.waitOK()
	return to
}

// Owner returns the address of the node owning slot now.
func (c *Cluster) Owner(slot int) string {
	c.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.Nodes[0].Addr()})
	defer rdb.Close()
	shards, err := rdb.ClusterShards(context.Background()).Result()
	if err != nil {
		c.t.Fatalf("redistest: cluster shards: %v", err)
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start <= int64(slot) && int64(slot) <= r.End {
				for _, n := range sh.Nodes {
					return fmt.Sprintf("%s:%d", n.IP, n.Port)
				}
			}
		}
	}
	return ""
}

// Sentinel is a redis-sentinel process monitoring one master.
type Sentinel struct {
	Addr   string
	Master string
}

// StartSentinel starts a Sentinel that monitors master under the name
// master_name, and waits until it answers for it. It stops when the test
// ends.
func StartSentinel(t testing.TB, master *Server, name string) *Sentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redistest: redis-server is not on the PATH: install it (Debian package redis-server; .ci/run does)")
	}
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
		port, dir, name, master.port, name)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel") // #nosec G204 -- redis-server from the PATH, a config of our own
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start sentinel: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	s := &Sentinel{Addr: fmt.Sprintf("127.0.0.1:%d", port), Master: name}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		addr, err := sc.GetMasterAddrByName(context.Background(), name).Result()
		if err == nil && len(addr) == 2 && addr[1] == fmt.Sprint(master.port) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinel on %s does not know %s: %v %v", s.Addr, name, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is go-redis's failover URL of the sentinel's master.
func (s *Sentinel) URL() string { return "redis://" + s.Addr + "?master_name=" + s.Master }
