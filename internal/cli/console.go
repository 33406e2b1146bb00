package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fleetworks/fleet/internal/console"
)

// consoleCmd is `fleet console`: the operator console of one consumer
// group, a web server. Flag and variable names are a contract.
type consoleCmd struct {
	Brokers       []string `env:"FLEET_BROKERS" sep:"," help:"Kafka bootstrap brokers, host:port, comma-separated."`
	Topics        []string `env:"FLEET_TOPICS" sep:"," help:"The group's source topics, comma-separated (default: the topics the group has committed offsets on, without their .retry.N, .parked and .dlq)."`
	Group         string   `env:"FLEET_GROUP" required:"" help:"The consumer group the console shows."`
	kafkaSecurity `embed:""`
	redisConn     `embed:""`

	Listen           string   `env:"FLEET_CONSOLE_ADDR" default:"127.0.0.1:8090" help:"Address the console listens on, host:port."`
	TokensFile       string   `name:"tokens-file" env:"FLEET_CONSOLE_TOKENS_FILE" help:"File of the console's bearer tokens, one per line: <name> <role> <token>, the role viewer or operator (FLEET_CONSOLE_TOKENS may hold the same lines)."`
	TrustedHeader    string   `name:"trusted-header" env:"FLEET_CONSOLE_TRUSTED_HEADER" help:"Header naming the user, set by an authenticating proxy in front of the console (which must strip it from what clients send), e.g. X-Forwarded-User."`
	TrustedOperators []string `name:"trusted-operators" env:"FLEET_CONSOLE_TRUSTED_OPERATORS" sep:"," help:"Users of --trusted-header given the operator role, comma-separated; the others view."`
	SecureCookies    bool     `name:"secure-cookies" env:"FLEET_CONSOLE_SECURE_COOKIES" help:"Mark the session cookie Secure: set it when a proxy in front of the console serves it over TLS."`
	StatusPort       int      `name:"status-port" env:"FLEET_CONSOLE_STATUS_PORT" default:"8080" help:"Port of the members' /status (their --http-addr or --status-addr), asked at each member's host."`
	StatusURLs       []string `name:"status-urls" env:"FLEET_CONSOLE_STATUS_URLS" sep:"," help:"Ask these /status addresses (host:port or URLs, comma-separated) instead of each member's host on --status-port: for members whose host the console cannot reach as Kafka sees it."`
	AuditStream      string   `name:"audit-stream" env:"FLEET_CONSOLE_AUDIT_STREAM" default:"fleet:console:audit" help:"Redis stream that keeps the audit log besides stderr (\"off\": stderr only)."`
	AuditStreamMax   int64    `name:"audit-stream-max" env:"FLEET_CONSOLE_AUDIT_STREAM_MAX" default:"10000" help:"About how many entries the audit stream keeps."`
}

func (c *consoleCmd) Run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tokens, trusted, err := c.access()
	if err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return configError{fmt.Errorf("listen %q: want host:port: %w", c.Listen, err)}
	}
	dialer, err := c.kafkaDialer()
	if err != nil {
		return configError{err}
	}
	if c.Redis == "" {
		return configError{errors.New("the console reads the group's idempotency records and held keys: name their Redis with --redis or FLEET_REDIS_URL")}
	}
	target, err := c.target()
	if err != nil {
		return configError{err}
	}
	backend, err := newConsoleBackend(consoleConfig{Brokers: c.Brokers, Dialer: dialer, Redis: target, Group: c.Group, Topics: c.Topics, StatusPort: c.StatusPort,
		StatusURLs: statusURLs(c.StatusURLs)})
	if err != nil {
		return err
	}
	defer backend.Close()
	log := newLogger(os.Stderr, "info", "json")
	cfg := console.Config{Backend: backend, Tokens: tokens, Trusted: trusted, Audit: os.Stderr, SecureCookies: c.SecureCookies}
	if c.AuditStream != "off" {
		rdb := target.quiet().client()
		defer rdb.Close()
		cfg.AuditSink = auditStream{c: rdb, key: c.AuditStream, max: c.AuditStreamMax}
	}
	srv, err := console.New(cfg)
	if err != nil {
		return configError{err}
	}
	return serveConsole(ctx, log, c.Listen, srv)
}

// consoleTokens reads the console's tokens from --tokens-file and
// FLEET_CONSOLE_TOKENS (both may be given).
func (c *consoleCmd) consoleTokens() (*console.Tokens, error) {
	text := os.Getenv("FLEET_CONSOLE_TOKENS")
	if c.TokensFile != "" {
		b, err := os.ReadFile(c.TokensFile)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
		text += "\n" + string(b)
	}
	return console.ParseTokens(text)
}

// access reads who may come in: tokens, a trusted header, or both; the
// console never starts open.
func (c *consoleCmd) access() (*console.Tokens, *console.TrustedHeader, error) {
	tokens, err := c.consoleTokens()
	if err != nil {
		return nil, nil, configError{err}
	}
	var trusted *console.TrustedHeader
	if c.TrustedHeader != "" {
		trusted = &console.TrustedHeader{Header: c.TrustedHeader, Operators: trimAll(c.TrustedOperators)}
	}
	if tokens.Len() == 0 && trusted == nil {
		return nil, nil, configError{errors.New("the console needs access control: tokens (--tokens-file or FLEET_CONSOLE_TOKENS, lines \"<name> <role> <token>\") or --trusted-header from an authenticating proxy")}
	}
	return tokens, trusted, nil
}

// serveConsole serves srv on addr until ctx ends.
func serveConsole(ctx context.Context, log *slog.Logger, addr string, srv *console.Server) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", addr, err)
	}
	return serveConsoleOn(ctx, log, ln, srv)
}

// serveConsoleOn serves srv on ln until ctx ends, then stops it: the
// requests in flight get 5 s, the replays it runs are cancelled.
func serveConsoleOn(ctx context.Context, log *slog.Logger, ln net.Listener, srv *console.Server) error {
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	log.Info("console listening", "url", consoleURL(ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(shutdown)
	srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// consoleURL is how a person reaches a console listening on addr.
func consoleURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// statusURLs makes each --status-urls entry a /status URL: host:port
// becomes http://host:port/status.
func statusURLs(given []string) []string {
	var out []string
	for _, u := range trimAll(given) {
		out = append(out, (&statusCmd{Addr: u}).url())
	}
	return out
}
