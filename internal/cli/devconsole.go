package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/fleetworks/fleet/internal/console"
)

// devConsole is the operator console of fleet dev --keep-running: the
// embedded broker and Redis, the demo topic and group, the process's own
// /status, and one operator token made at start.
type devConsole struct {
	url, token string
	wait       func()
}

// startDevConsole serves the console on addr (a free port when addr is
// taken) until ctx ends; wait waits for it to stop.
func startDevConsole(ctx context.Context, log *slog.Logger, audit io.Writer, addr string, brokers []string, redisURL, topic, statusAddr string) (*devConsole, error) {
	target, err := parseRedis(redisStandalone, redisURL)
	if err != nil {
		return nil, err
	}
	backend, err := newConsoleBackend(consoleConfig{Brokers: brokers, Redis: target, Group: devGroup, Topics: []string{topic},
		StatusURLs: []string{"http://" + statusAddr + "/status"}})
	if err != nil {
		return nil, err
	}
	var b [24]byte
	// crypto/rand does not fail on any supported platform.
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	tokens, err := console.ParseTokens("dev operator " + token)
	if err != nil {
		_ = backend.Close()
		return nil, err
	}
	rdb := target.quiet().client()
	srv, err := console.New(console.Config{Backend: backend, Tokens: tokens, Audit: audit,
		AuditSink: auditStream{c: rdb, key: AuditStream, max: 10000}})
	if err != nil {
		_ = backend.Close()
		_ = rdb.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		_ = backend.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer backend.Close()
		defer rdb.Close()
		if err := serveConsoleOn(ctx, log, ln, srv); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("console stopped", "err", err)
		}
	}()
	return &devConsole{url: consoleURL(ln.Addr().String()), token: token, wait: wg.Wait}, nil
}
