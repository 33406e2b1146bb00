package redistest

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartReplica starts a redis-server replicating master and waits until
// master counts it as a connected replica in sync. It stops when the test
// ends.
func StartReplica(t testing.TB, master *Server, args ...string) *Server {
	t.Helper()
	// The master's first full sync would otherwise wait 5 s for more
	// replicas to come.
	mc := redis.NewClient(&redis.Options{Addr: master.Addr(), MaxRetries: -1, TLSConfig: master.tls})
	defer mc.Close()
	if err := mc.ConfigSet(context.Background(), "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	r := launch(t, nil, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}, args...))
	master.WaitReplicas(1)
	return r
}

// WaitReplicas waits until the server counts n replicas online (INFO
// replication: slaveN:...,state=online).
func (s *Server) WaitReplicas(n int) {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, TLSConfig: s.tls})
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Count(info, "state=online") >= n {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: %s has not %d replicas online after %v: %v\n%s", s.Addr(), n, startTimeout, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Detach cuts a replica off its master (REPLICAOF NO ONE): it keeps what it
// has and hears nothing more, as on the far side of a network partition.
func (s *Server) Detach() {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, TLSConfig: s.tls})
	defer c.Close()
	if err := c.Do(context.Background(), "REPLICAOF", "NO", "ONE").Err(); err != nil {
		s.t.Fatalf("redistest: detach %s: %v", s.Addr(), err)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing is
// answered or acknowledged, as with a cut link or a stalled host. Resume
// undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		_ = s.proc.cmd.Process.Signal(sig)
	}
}

// TakeOver ends a failover to other, a replica of s, as a client of s's
// address sees it: s is stopped (if it runs), other is promoted with what it
// holds, s is restarted empty on its own port as other's replica, syncs, and
// is promoted, and other replicates s again. A client of s's address then
// finds exactly what other held, and a master with one replica.
func (s *Server) TakeOver(other *Server) {
	s.t.Helper()
	s.Stop()
	ctx := context.Background()
	oc := redis.NewClient(&redis.Options{Addr: other.Addr(), MaxRetries: -1, TLSConfig: other.tls})
	defer oc.Close()
	if err := oc.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		s.t.Fatalf("redistest: promote %s: %v", other.Addr(), err)
	}
	if err := oc.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	args := s.args
	s.args = append(append([]string(nil), args...), "--replicaof", "127.0.0.1", strconv.Itoa(other.port), "--repl-diskless-sync-delay", "0")
	err := s.start()
	s.args = args
	if err != nil {
		s.t.Fatalf("redistest: restart as a replica: %v", err)
	}
	other.WaitReplicas(1)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, TLSConfig: s.tls})
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: %s did not sync from %s: %v", s.Addr(), other.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		s.t.Fatalf("redistest: promote %s: %v", s.Addr(), err)
	}
	if err := oc.Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(s.port)).Err(); err != nil {
		s.t.Fatalf("redistest: %s back to replica: %v", other.Addr(), err)
	}
	s.WaitReplicas(1)
}
