package redistest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long Start and Restart wait for PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process started by Start. Its methods are safe
// for concurrent use, but Start and Restart fail the test through t, so call
// them from the test's goroutine.
type Server struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string
	// tls, when set, is the client side of a server that takes only TLS.
	tls *tls.Config

	mu   sync.Mutex
	proc *process
}

// process is one run of redis-server.
type process struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // set before exited is closed
}

// Start starts redis-server and waits until it answers PING; the server is
// stopped when the test ends. args are added to the command line (for example
// "--rename-command", "CONFIG", ""). It fails the test when redis-server is
// not installed or does not start.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return launch(t, nil, args)
}

// StartTLS starts redis-server taking only TLS connections on its port,
// with the server certificate and key and the CA that clients check it
// against; clients need no certificate of their own.
func StartTLS(t testing.TB, certFile, keyFile, caFile string, args ...string) *Server {
	t.Helper()
	pem, err := os.ReadFile(caFile) // #nosec G304 -- a test's own file
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("redistest: no certificate in %s", caFile)
	}
	return launch(t, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
		append([]string{"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
			"--tls-auth-clients", "no"}, args...))
}

// launch starts a server with args, over TLS when tlsConfig is set.
func launch(t testing.TB, tlsConfig *tls.Config, args []string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redistest: redis-server is not on the PATH: install it (Debian package redis-server; .ci/run does)")
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), tls: tlsConfig, args: args}
	t.Cleanup(s.Stop)
	// The free port is free when we look, not necessarily when redis-server
	// binds it: try another if the server exits at start-up.
	for try := 1; ; try++ {
		s.port = freePort(t)
		err := s.start()
		if err == nil {
			return s
		}
		if try == 3 {
			t.Fatalf("redistest: %v", err)
		}
	}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL (rediss:// with TLS), database 0.
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Client returns a client for the server, closed when t ends. Like fleet's
// own clients, it honours context deadlines.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, TLSConfig: s.tls})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server and waits for it to exit; its data is lost. Stopping
// a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.cmd.Process.Kill()
	<-s.proc.exited
	s.proc = nil
}

// Restart stops the server if it runs, and starts it again on the same
// port, waiting until it answers PING. It comes back empty, unless it was
// started with persistence (for example "--appendonly", "yes",
// "--appendfsync", "always"): then with what it had written.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// start runs redis-server on s.port and waits until it answers PING or
// exits.
func (s *Server) start() error {
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.tls != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
	}
	args := append(append(port,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--maxmemory-policy", "noeviction",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	), s.args...)
	p := &process{cmd: exec.Command(s.bin, args...), exited: make(chan struct{})} // #nosec G204 -- redis-server from the PATH, arguments of our own
	p.cmd.Stdout = &p.stderr
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond, TLSConfig: s.tls})
	defer c.Close()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil || redis.IsAuthError(err) {
			return nil // answering, if only to ask for a password
		}
		select {
		case <-p.exited:
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			return fmt.Errorf("redis-server on port %d exited at start-up (%v): %s%s", s.port, p.err, p.stderr.String(), s.logTail())
		case <-deadline.C:
			s.Stop()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %v%s", s.port, startTimeout, err, s.logTail())
		case <-poll.C:
		}
	}
}

// logTail returns the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nredis.log:\n" + string(b)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
