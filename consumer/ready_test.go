package consumer_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// TestReadyNamesUnreachableBrokers: an engine whose brokers do not answer
// says so in its readiness, with their addresses and the cause, rather than
// that it is not a member of a generation.
func TestReadyNamesUnreachableBrokers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := consumer.DefaultConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = []string{addr}, []string{"t"}, "g"
	m := consumer.NewMetrics(prometheus.NewRegistry())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub := consumer.NewPublisher(cfg.Brokers, nil)
	defer pub.Close()
	en, err := consumer.New(cfg, dedupe.NewMemory(dedupe.DefaultConfig(), nil), handlers.NewRouter(), pub, log, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- en.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 10*time.Second, "readiness naming the brokers", func() bool {
		err := en.Ready()
		return err != nil && strings.Contains(err.Error(), "no broker of "+addr) && strings.Contains(err.Error(), "connection refused")
	})
}
