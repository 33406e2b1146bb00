package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
)

// runCmd is `fleet run`. Flag and variable names are a contract.
type runCmd struct {
	Brokers          []string `env:"FLEET_BROKERS" sep:"," help:"Kafka bootstrap brokers, host:port, comma-separated."`
	Topics           []string `env:"FLEET_TOPICS" sep:"," help:"Source topics, comma-separated. Each has a dead-letter topic <topic>.dlq."`
	Group            string   `env:"FLEET_GROUP" help:"Consumer group; also scopes idempotency records."`
	redisConn        `embed:""`
	RedisMinReplicas int    `name:"redis-min-replicas" env:"FLEET_REDIS_MIN_REPLICAS" default:"0" help:"Replicas that must hold an event's completion (Redis WAIT) before its offset may be committed; until they do, fleet commits nothing past it and reports not ready. 0 trusts the master alone: a failover may then lose completions."`
	HTTPAddr         string `name:"http-addr" env:"FLEET_HTTP_ADDR" default:":8080" help:"Address serving /metrics, /healthz and /readyz (and /status, unless --status-addr says otherwise); the default listens on every interface."`
	StatusAddr       string `name:"status-addr" env:"FLEET_STATUS_ADDR" help:"Where /status is served: empty with /metrics on --http-addr, \"off\" nowhere, or an address of its own (host:port)."`
	PprofAddr        string `name:"pprof-addr" env:"FLEET_PPROF_ADDR" help:"Serve the runtime's profiles (net/http/pprof, /debug/pprof/) on this address of their own, host:port, e.g. 127.0.0.1:6060; empty (the default): nowhere."`
	Tracing          bool   `env:"FLEET_TRACING" help:"Trace every event with OpenTelemetry, as a child of the trace context it carries (traceparent); exporter, sampler and resource come from the standard OTEL_* variables (default: OTLP to localhost). Off (the default): no tracing at all."`

	Lease             time.Duration `env:"FLEET_LEASE" default:"30s" help:"Claim lease; extended every third of it while a handler runs."`
	Retention         time.Duration `env:"FLEET_RETENTION" default:"24h" help:"Dedupe window: how long an event's idempotency record is kept."`
	PackDoneRecords   bool          `name:"pack-done-records" env:"FLEET_PACK_DONE_RECORDS" help:"Pack done idempotency records into a hash per key and slice of the window: 40 to 90 bytes of Redis memory a record instead of 230, for about half as much Redis CPU again per event (docs/operations.md, \"Sizing\"). Not on a Redis Cluster. Once a worker has packed, every worker finds packed records, packing or not."`
	Attempts          int           `env:"FLEET_ATTEMPTS" default:"12" help:"Attempt budget of one event, kept in its idempotency record across restarts and retry tiers; past it the event is dead-lettered."`
	InPlaceAttempts   int           `env:"FLEET_IN_PLACE_ATTEMPTS" default:"3" help:"Attempts of one delivery, with backoff, before the event moves to the next retry topic."`
	RetryDelays       string        `env:"FLEET_RETRY_DELAYS" default:"1s,10s,1m" help:"Delays of the retry topics <topic>.retry.1, .2, …, comma-separated; after the last, <topic>.dlq. \"none\": no retry topics."`
	RetryOrder        string        `env:"FLEET_RETRY_ORDER" default:"key" enum:"key,none" help:"key: a key's later events wait (parked in Redis) behind one of its events that waits in a retry tier or is held, and run after it, in order (docs/ordering.md); none: they run meanwhile and overtake it."`
	OnDeadLetter      string        `env:"FLEET_ON_DEAD_LETTER" default:"continue" enum:"continue,hold" help:"When a key's waiting event is dead-lettered: continue runs the events parked behind it; hold keeps them parked until fleet keys unblock, or until the dead letter is replayed and succeeds."`
	MaxParkedPerKey   int           `env:"FLEET_MAX_PARKED_PER_KEY" default:"10000" help:"Most events parked behind one key's waiting event; more are dead-lettered as parked_overflow (0: no bound)."`
	Concurrency       int           `env:"FLEET_CONCURRENCY" default:"64" help:"Key-ordered lanes per partition."`
	SessionTimeout    time.Duration `env:"FLEET_SESSION_TIMEOUT" default:"30s" help:"Kafka consumer group session timeout."`
	HeartbeatInterval time.Duration `env:"FLEET_HEARTBEAT_INTERVAL" default:"3s" help:"Kafka consumer group heartbeat interval."`
	DrainTimeout      time.Duration `env:"FLEET_DRAIN_TIMEOUT" default:"10s" help:"Budget for in-flight handlers on rebalance or shutdown; at most 2/3 of the session timeout."`
	HandlerTimeout    time.Duration `env:"FLEET_HANDLER_TIMEOUT" default:"30s" help:"Bound on one handler attempt (0: none)."`
	BatchSize         int           `env:"FLEET_BATCH_SIZE" default:"256" help:"Events claimed in one Redis round trip."`
	MaxInFlight       int           `env:"FLEET_MAX_IN_FLIGHT" default:"256" help:"Fetched but unfinished events per partition."`
	WorkerMaxInFlight int           `env:"FLEET_WORKER_MAX_IN_FLIGHT" default:"4096" help:"Fetched but unfinished events over all the partitions of the worker; bounds its memory when it takes over many partitions with a backlog (0: no bound)."`
	MaxInFlightBytes  int64         `env:"FLEET_MAX_IN_FLIGHT_BYTES" default:"4194304" help:"Bytes (keys, values, headers) a partition holds from fetch to finish; a larger message goes through alone."`
	RateLimits        string        `env:"FLEET_RATE_LIMITS" help:"Fleet-wide limits per event type, shared by every worker of the group through Redis: TYPE=N/s, TYPE=N/m or TYPE=N/h, comma-separated."`
	MaxMessageBytes   int           `env:"FLEET_MAX_MESSAGE_BYTES" default:"1048576" help:"Largest message (key, value, headers) accepted; larger ones are dead-lettered as too_large (0: no limit)."`
	MaxHeaders        int           `env:"FLEET_MAX_HEADERS" default:"64" help:"Most headers a message may carry; more are dead-lettered as too_many_headers (0: no limit)."`
	MaxJSONDepth      int           `name:"max-json-depth" env:"FLEET_MAX_JSON_DEPTH" default:"32" help:"Deepest nesting of a JSON value; deeper ones are dead-lettered as too_deep (0: no limit)."`
	MaxKeyBytes       int           `env:"FLEET_MAX_KEY_BYTES" default:"256" help:"Longest message key accepted; longer ones are dead-lettered as too_long (0: no limit)."`
	MaxAttributeBytes int           `env:"FLEET_MAX_ATTRIBUTE_BYTES" default:"256" help:"Longest event id, source, type and subject accepted; longer ones are dead-lettered as too_long (0: no limit)."`
	CommitInterval    time.Duration `env:"FLEET_COMMIT_INTERVAL" default:"1s" help:"How often offsets are committed."`

	kafkaSecurity    `embed:""`
	httpHandlerFlags `embed:""`

	LogLevel  string `env:"FLEET_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level: debug, info, warn, error."`
	LogFormat string `env:"FLEET_LOG_FORMAT" default:"json" enum:"json,text" help:"Log format: json or text."`
}

func (c *runCmd) consumerConfig() consumer.Config {
	cfg := consumer.DefaultConfig()
	cfg.Brokers = trimAll(c.Brokers)
	cfg.Topics = trimAll(c.Topics)
	cfg.Group = c.Group
	cfg.Lease = c.Lease
	cfg.MaxAttempts = c.Attempts
	cfg.InPlaceAttempts = c.InPlaceAttempts
	cfg.RetryDelays, _ = parseDelays(c.RetryDelays)
	cfg.RetryOrder, cfg.OnDeadLetter, cfg.MaxParkedPerKey = c.RetryOrder, c.OnDeadLetter, c.MaxParkedPerKey
	cfg.Lanes = c.Concurrency
	cfg.SessionTimeout = c.SessionTimeout
	cfg.RebalanceTimeout = c.SessionTimeout
	cfg.HeartbeatInterval = c.HeartbeatInterval
	cfg.DrainTimeout = c.DrainTimeout
	cfg.HandlerTimeout = c.HandlerTimeout
	cfg.BatchSize = c.BatchSize
	cfg.MaxInFlight = c.MaxInFlight
	cfg.WorkerMaxInFlight = c.WorkerMaxInFlight
	cfg.MaxInFlightBytes = c.MaxInFlightBytes
	cfg.CommitInterval = c.CommitInterval
	cfg.MaxMessageBytes, cfg.MaxHeaders, cfg.MaxJSONDepth = c.MaxMessageBytes, c.MaxHeaders, c.MaxJSONDepth
	cfg.MaxKeyBytes, cfg.MaxAttributeBytes = c.MaxKeyBytes, c.MaxAttributeBytes
	return cfg
}

// settings checks the whole configuration and returns it, or a configError
// naming every problem.
func (c *runCmd) settings() (consumer.Config, dedupe.Config, redisTarget, error) {
	cfg := c.consumerConfig()
	store := dedupe.DefaultConfig()
	// The store gives the lease the engine extends: one setting, the
	// engine's.
	store.Lease, store.Retention, store.MinReplicas = cfg.Lease, c.Retention, c.RedisMinReplicas
	store.PackDoneRecords = c.PackDoneRecords
	var errs []error
	if delays, err := parseDelays(c.RetryDelays); err != nil {
		errs = append(errs, err)
	} else if err := delaysFitRetention(delays, c.Retention); err != nil {
		errs = append(errs, err)
	}
	if _, err := dedupe.ParseRateLimits(c.RateLimits); err != nil {
		errs = append(errs, err)
	}
	dialer, err := c.kafkaDialer()
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Dialer = dialer
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	// A lease out of bounds is the engine config's to report; the store's
	// own settings are checked against a valid one.
	if err := store.Validate(); err != nil && dedupe.CheckLease(store.Lease) == nil {
		errs = append(errs, err)
	}
	target, err := c.target()
	if err != nil {
		errs = append(errs, err)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http addr %q: %w", c.HTTPAddr, err))
	}
	if c.StatusAddr != "" && c.StatusAddr != statusOff {
		if _, _, err := net.SplitHostPort(c.StatusAddr); err != nil {
			errs = append(errs, fmt.Errorf("status addr %q: want host:port, off, or nothing: %w", c.StatusAddr, err))
		}
	}
	if err := checkPprofAddr(c.PprofAddr, c.HTTPAddr, c.StatusAddr); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.httpHandlerFlags.settings(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, store, redisTarget{}, configError{err}
	}
	return cfg, store, target, nil
}

// kafkaSecurity are the Kafka connection settings (TLS, SASL) of every
// command that talks to Kafka.
type kafkaSecurity struct {
	KafkaSASLMechanism string `name:"kafka-sasl-mechanism" env:"FLEET_KAFKA_SASL_MECHANISM" enum:",PLAIN,SCRAM-SHA-256,SCRAM-SHA-512" default:"" help:"SASL mechanism for Kafka: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none)."`
	KafkaSASLUsername  string `name:"kafka-sasl-username" env:"FLEET_KAFKA_SASL_USERNAME" help:"SASL username for Kafka."`
	KafkaSASLPassword  string `name:"kafka-sasl-password" env:"FLEET_KAFKA_SASL_PASSWORD" help:"SASL password for Kafka; prefer the variable to the flag."`
	KafkaTLS           bool   `name:"kafka-tls" env:"FLEET_KAFKA_TLS" help:"Connect to Kafka over TLS."`
	KafkaTLSCAFile     string `name:"kafka-tls-ca-file" env:"FLEET_KAFKA_TLS_CA_FILE" help:"PEM bundle of the CAs that signed the brokers' certificates (default: the system roots)."`
	KafkaTLSCertFile   string `name:"kafka-tls-cert-file" env:"FLEET_KAFKA_TLS_CERT_FILE" help:"Client certificate (PEM) for Kafka TLS."`
	KafkaTLSKeyFile    string `name:"kafka-tls-key-file" env:"FLEET_KAFKA_TLS_KEY_FILE" help:"Client key (PEM) for Kafka TLS."`
	KafkaTLSMinVersion string `name:"kafka-tls-min-version" env:"FLEET_KAFKA_TLS_MIN_VERSION" default:"1.2" enum:"1.2,1.3" help:"Lowest TLS version accepted from the brokers: 1.2 or 1.3."`
	// KafkaSASLPlaintext allows SASL PLAIN, which sends the password as
	// it is, over a connection without TLS.
	KafkaSASLPlaintext bool `name:"kafka-sasl-allow-plaintext" env:"FLEET_KAFKA_SASL_ALLOW_PLAINTEXT" help:"Allow SASL PLAIN without TLS, which sends the password in clear to anyone on the path (refused otherwise)."`
}

// kafkaDialer builds the Kafka connection settings (TLS, SASL), or nil when
// there are none.
func (c *kafkaSecurity) kafkaDialer() (*kafka.Dialer, error) {
	var errs []error
	d := &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true}
	if c.KafkaTLS || c.KafkaTLSCAFile != "" || c.KafkaTLSCertFile != "" {
		t := &tls.Config{MinVersion: max(tlsVersions[c.KafkaTLSMinVersion], tls.VersionTLS12)}
		if c.KafkaTLSCAFile != "" {
			pem, err := os.ReadFile(c.KafkaTLSCAFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("kafka TLS CA file: %w", err))
			} else {
				t.RootCAs = x509.NewCertPool()
				if !t.RootCAs.AppendCertsFromPEM(pem) {
					errs = append(errs, fmt.Errorf("kafka TLS CA file %s: no PEM certificate in it", c.KafkaTLSCAFile))
				}
			}
		}
		if (c.KafkaTLSCertFile == "") != (c.KafkaTLSKeyFile == "") {
			errs = append(errs, errors.New("kafka TLS: give both the client certificate and its key, or neither"))
		} else if c.KafkaTLSCertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.KafkaTLSCertFile, c.KafkaTLSKeyFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("kafka TLS client certificate: %w", err))
			}
			t.Certificates = []tls.Certificate{cert}
		}
		d.TLS = t
	}
	switch c.KafkaSASLMechanism {
	case "":
		if c.KafkaSASLUsername != "" || c.KafkaSASLPassword != "" {
			errs = append(errs, errors.New("kafka SASL: a username or password without --kafka-sasl-mechanism"))
		}
	case "PLAIN":
		d.SASLMechanism = plain.Mechanism{Username: c.KafkaSASLUsername, Password: c.KafkaSASLPassword}
		if d.TLS == nil && !c.KafkaSASLPlaintext {
			errs = append(errs, errors.New("kafka SASL PLAIN without TLS sends the password in clear: add --kafka-tls, use SCRAM, or allow it with --kafka-sasl-allow-plaintext"))
		}
	default:
		algo := scram.SHA256
		if c.KafkaSASLMechanism == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.KafkaSASLUsername, c.KafkaSASLPassword)
		if err != nil {
			errs = append(errs, fmt.Errorf("kafka SASL: %w", err))
		}
		d.SASLMechanism = m
	}
	if c.KafkaSASLMechanism != "" && (c.KafkaSASLUsername == "" || c.KafkaSASLPassword == "") {
		errs = append(errs, errors.New("kafka SASL: username and password are required (FLEET_KAFKA_SASL_USERNAME, FLEET_KAFKA_SASL_PASSWORD)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if d.TLS == nil && d.SASLMechanism == nil {
		return nil, nil
	}
	return d, nil
}

// parseDelays parses the retry tiers: durations, comma-separated; "none"
// or nothing is no tier.
func parseDelays(s string) ([]time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("retry delays %q: %q is not a positive duration", s, strings.TrimSpace(f))
		}
		out = append(out, d)
	}
	return out, nil
}

// delaysFitRetention refuses retry tiers that an event could outlive its
// idempotency record in: an event whose record expires while it waits in a
// retry tier starts over (a new fence, a fresh attempt budget, and no
// memory of its first payload), and a duplicate of it would run again.
func delaysFitRetention(delays []time.Duration, retention time.Duration) error {
	var total time.Duration
	for _, d := range delays {
		total += d
	}
	if total >= retention {
		return fmt.Errorf("retry delays add up to %v, not less than --retention (%v): an event waiting in a retry tier would outlive its idempotency record; raise --retention or shorten --retry-delays", total, retention)
	}
	return nil
}

func trimAll(xs []string) []string {
	out := make([]string, 0, len(xs))
	for _, x := range xs {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func (c *runCmd) Run(app *App) error {
	cfg, storeCfg, target, err := c.settings()
	if err != nil {
		return err
	}
	log := newLogger(os.Stderr, c.LogLevel, c.LogFormat)
	if target.insecure() {
		log.Warn("Redis's certificate is not checked (--redis-tls-insecure-skip-verify): anyone on the path can read and change the idempotency records")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rdb := target.client()
	defer rdb.Close()
	limits, _ := dedupe.ParseRateLimits(c.RateLimits) // checked by settings
	if len(limits) > 0 {
		cfg.RateLimiter = dedupe.NewRateLimits(rdb, cfg.Group, limits)
	}
	httpHandlers, _ := c.httpHandlerFlags.settings() // checked by settings
	tp, stopTracing, err := startTracing(ctx, log, c.Tracing, app.version())
	if err != nil {
		return err
	}
	defer func() {
		if err := stopTracing(); err != nil {
			log.Warn("spans lost at exit", "err", err)
		}
	}()
	cfg.TracerProvider = tp
	return serve(ctx, log, wiring{app: app, consumer: cfg, store: storeCfg, rdb: rdb, httpAddr: c.HTTPAddr, statusAddr: c.StatusAddr, pprofAddr: c.PprofAddr,
		httpHandlers: httpHandlers})
}

// newLogger returns the process logger and routes go-redis's own messages
// (one per failed dial during an outage) into it at debug level: the engine
// reports the store's state itself. level and format are already validated.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	o := &slog.HandlerOptions{Level: l}
	var log *slog.Logger
	if format == "text" {
		log = slog.New(slog.NewTextHandler(w, o))
	} else {
		log = slog.New(slog.NewJSONHandler(w, o))
	}
	redis.SetLogger(redisLogger{log})
	return log
}

type redisLogger struct{ log *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
