package cli

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
)

// parseRun parses `fleet run` arguments with the real struct tags and
// returns the checked settings.
func parseRun(t *testing.T, args ...string) (consumer.Config, dedupe.Config, string, error) {
	t.Helper()
	var c cli
	p, err := kong.New(&c, kong.Vars{"dev_topic": "payments"}, kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Parse(append([]string{"run"}, args...)); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	cfg, store, target, err := c.Run.settings()
	addr := ""
	if err == nil {
		addr = target.addr()
	}
	return cfg, store, addr, err
}

// required are the flags without defaults.
var required = []string{"--brokers", "k1:9092", "--topics", "payments", "--group", "ledger"}

func TestRunDefaults(t *testing.T) {
	cfg, store, addr, err := parseRun(t, required...)
	if err != nil {
		t.Fatal(err)
	}
	def := consumer.DefaultConfig()
	def.Brokers, def.Topics, def.Group = []string{"k1:9092"}, []string{"payments"}, "ledger"
	if diff := diffConfig(cfg, def); diff != "" {
		t.Errorf("defaults differ from consumer.DefaultConfig: %s", diff)
	}
	if store != dedupe.DefaultConfig() {
		t.Errorf("store config %+v", store)
	}
	if addr != "127.0.0.1:6379" {
		t.Errorf("redis addr %q", addr)
	}
}

func TestRunFlagsAndEnvMapping(t *testing.T) {
	flags := []string{
		"--brokers", "k1:9092, k2:9092", "--topics", "payments,orders", "--group", "ledger",
		"--redis", "rediss://user:secret@redis.example:6380/2", "--http-addr", "127.0.0.1:9000",
		"--lease", "12s", "--retention", "2h", "--attempts", "7", "--in-place-attempts", "2", "--retry-delays", "2s, 30s", "--concurrency", "4",
		"--session-timeout", "45s", "--drain-timeout", "20s", "--handler-timeout", "5s",
		"--batch-size", "64", "--max-in-flight", "512", "--max-in-flight-bytes", "1048576", "--heartbeat-interval", "2s",
		"--commit-interval", "500ms", "--log-level", "debug", "--log-format", "text",
		"--max-message-bytes", "2048", "--max-headers", "8", "--max-json-depth", "4", "--redis-min-replicas", "2",
		"--max-key-bytes", "100", "--max-attribute-bytes", "120",
	}
	env := map[string]string{}
	for i := 0; i < len(flags); i += 2 {
		name := "FLEET_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flags[i], "--"), "-", "_"))
		if name == "FLEET_REDIS" {
			name = "FLEET_REDIS_URL"
		}
		env[name] = flags[i+1]
	}
	want := consumer.DefaultConfig()
	want.Brokers, want.Topics, want.Group = []string{"k1:9092", "k2:9092"}, []string{"payments", "orders"}, "ledger"
	want.Lease, want.MaxAttempts, want.Lanes = 12*time.Second, 7, 4
	want.InPlaceAttempts, want.RetryDelays = 2, []time.Duration{2 * time.Second, 30 * time.Second}
	want.SessionTimeout, want.RebalanceTimeout, want.DrainTimeout = 45*time.Second, 45*time.Second, 20*time.Second
	want.HandlerTimeout, want.BatchSize, want.MaxInFlight, want.MaxInFlightBytes = 5*time.Second, 64, 512, 1<<20
	want.HeartbeatInterval, want.CommitInterval = 2*time.Second, 500*time.Millisecond
	want.MaxMessageBytes, want.MaxHeaders, want.MaxJSONDepth = 2048, 8, 4
	want.MaxKeyBytes, want.MaxAttributeBytes = 100, 120
	wantStore := dedupe.Config{Lease: 12 * time.Second, Retention: 2 * time.Hour, MinReplicas: 2, ReplicaTimeout: time.Second}

	check := func(t *testing.T, cfg consumer.Config, store dedupe.Config, addr string, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if diff := diffConfig(cfg, want); diff != "" {
			t.Error(diff)
		}
		if store != wantStore {
			t.Errorf("store config %+v, want %+v", store, wantStore)
		}
		if addr != "redis.example:6380" {
			t.Errorf("redis addr %q", addr)
		}
	}
	t.Run("flags", func(t *testing.T) {
		cfg, store, addr, err := parseRun(t, flags...)
		check(t, cfg, store, addr, err)
	})
	t.Run("env", func(t *testing.T) {
		for k, v := range env {
			t.Setenv(k, v)
		}
		cfg, store, addr, err := parseRun(t)
		check(t, cfg, store, addr, err)
	})
	t.Run("flag over env", func(t *testing.T) {
		for k, v := range env {
			t.Setenv(k, v)
		}
		t.Setenv("FLEET_ATTEMPTS", "99")
		cfg, _, _, err := parseRun(t, "--attempts", "7")
		if err != nil || cfg.MaxAttempts != 7 {
			t.Fatalf("attempts %d, err %v; want the flag's 7", cfg.MaxAttempts, err)
		}
	})
}

// diffConfig names the fields that differ; Dialer and OnFinish are not set
// by the command line.
func diffConfig(got, want consumer.Config) string {
	var d []string
	field := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
	}
	field("Brokers", strings.Join(got.Brokers, ","), strings.Join(want.Brokers, ","))
	field("Topics", strings.Join(got.Topics, ","), strings.Join(want.Topics, ","))
	field("Group", got.Group, want.Group)
	field("Lanes", got.Lanes, want.Lanes)
	field("MaxInFlight", got.MaxInFlight, want.MaxInFlight)
	field("MaxInFlightBytes", got.MaxInFlightBytes, want.MaxInFlightBytes)
	field("BatchSize", got.BatchSize, want.BatchSize)
	field("MaxAttempts", got.MaxAttempts, want.MaxAttempts)
	field("MaxMessageBytes", got.MaxMessageBytes, want.MaxMessageBytes)
	field("MaxHeaders", got.MaxHeaders, want.MaxHeaders)
	field("MaxJSONDepth", got.MaxJSONDepth, want.MaxJSONDepth)
	field("InPlaceAttempts", got.InPlaceAttempts, want.InPlaceAttempts)
	field("RetryDelays", fmt.Sprint(got.RetryDelays), fmt.Sprint(want.RetryDelays))
	field("RetryBackoff", got.RetryBackoff, want.RetryBackoff)
	field("MaxRetryBackoff", got.MaxRetryBackoff, want.MaxRetryBackoff)
	field("HandlerTimeout", got.HandlerTimeout, want.HandlerTimeout)
	field("Lease", got.Lease, want.Lease)
	field("SessionTimeout", got.SessionTimeout, want.SessionTimeout)
	field("HeartbeatInterval", got.HeartbeatInterval, want.HeartbeatInterval)
	field("RebalanceTimeout", got.RebalanceTimeout, want.RebalanceTimeout)
	field("DrainTimeout", got.DrainTimeout, want.DrainTimeout)
	field("CommitInterval", got.CommitInterval, want.CommitInterval)
	field("MaxWait", got.MaxWait, want.MaxWait)
	field("StartOffset", got.StartOffset, want.StartOffset)
	return strings.Join(d, "; ")
}

func TestRunInvalidConfiguration(t *testing.T) {
	with := func(extra ...string) []string { return append(slices.Clone(required), extra...) }
	tests := []struct {
		name string
		args []string
		want []string // every one must appear in the one-line message
	}{
		{"missing brokers", []string{"--topics", "t", "--group", "g"}, []string{"brokers: at least one is required"}},
		{"empty brokers", []string{"--brokers", " , ", "--topics", "t", "--group", "g"}, []string{"brokers: at least one is required"}},
		{"missing topics and group", []string{"--brokers", "b:9092"}, []string{"topics: at least one is required", "group: required"}},
		{"topic twice", with("--topics", "a,a"), []string{`topics: "a" is listed twice`}},
		{"redis URL scheme", with("--redis", "http://redis:6379"), []string{"redis URL"}},
		{"redis URL port", with("--redis", "redis://redis:port/0"), []string{"redis URL"}},
		{"redis URL db", with("--redis", "redis://redis:6379/zero"), []string{"redis URL"}},
		{"redis URL keeps its password", with("--redis", "redis://fleet:s3cret@redis:port/0"), []string{`redis URL: invalid port ":port"`}},
		{"drain equal to session timeout", with("--drain-timeout", "30s"), []string{"drain timeout 30s"}},
		{"drain over two thirds", with("--session-timeout", "9s", "--drain-timeout", "7s"), []string{"drain timeout 7s"}},
		{"heartbeat too slow", with("--heartbeat-interval", "15s"), []string{"heartbeat interval 15s"}},
		{"lease too short, once", with("--lease", "50ms"), []string{"lease 50ms: must be at least 100ms"}},
		{"retention under lease", with("--lease", "1m", "--retention", "30s"), []string{"retention 30s"}},
		{"retry delays past retention", with("--retry-delays", "1h,1h", "--retention", "90m"), []string{"retry delays add up to 2h0m0s, not less than --retention (1h30m0s)"}},
		{"negative min replicas", with("--redis-min-replicas=-1"), []string{"redis min replicas -1"}},
		{"no attempts", with("--attempts", "0"), []string{"attempts 0"}},
		{"no in-place attempts", with("--in-place-attempts", "0"), []string{"in-place attempts 0"}},
		{"retry delay not a duration", with("--retry-delays", "1s,soon"), []string{`retry delays "1s,soon": "soon" is not a positive duration`}},
		{"retry delay negative", with("--retry-delays=-1s"), []string{`"-1s" is not a positive duration`}},
		{"cluster URL", with("--redis-mode", "cluster", "--redis", "http://fleet:s3cret@h1:6379?addr=h2:6379"), []string{"redis URL"}},
		{"sentinel without master", with("--redis-mode", "sentinel", "--redis", "redis://s1:26379?addr=s2:26379"), []string{"master_name"}},
		{"redis CA without TLS", with("--redis-tls-ca-file", "/nonexistent/ca.pem"), []string{"redis TLS files need a rediss:// URL"}},
		{"redis CA missing", with("--redis", "rediss://r:6380/0", "--redis-tls-ca-file", "/nonexistent/ca.pem"), []string{"redis TLS CA file"}},
		{"rate limit syntax", with("--rate-limits", "payment.captured=fast"), []string{`rate limit "payment.captured=fast"`}},
		{"rate limit unit", with("--rate-limits", "payment.captured=5/d"), []string{`unit "d"`}},
		{"retry topic as source", with("--topics", "payments.retry.1"), []string{`"payments.retry.1" is a retry, parked or dead-letter topic`}},
		{"parked topic as source", with("--topics", "payments.parked"), []string{`"payments.parked" is a retry, parked or dead-letter topic`}},
		{"sasl without credentials", with("--kafka-sasl-mechanism", "SCRAM-SHA-512"), []string{"kafka SASL: username and password are required"}},
		{"sasl credentials without mechanism", with("--kafka-sasl-username", "u"), []string{"without --kafka-sasl-mechanism"}},
		{"kafka CA file missing", with("--kafka-tls", "--kafka-tls-ca-file", "/nonexistent/ca.pem"), []string{"kafka TLS CA file"}},
		{"kafka client cert without key", with("--kafka-tls-cert-file", "/nonexistent/c.pem"), []string{"give both the client certificate and its key"}},
		{"no lanes", with("--concurrency", "0"), []string{"lanes 0"}},
		{"no batch", with("--batch-size", "0"), []string{"batch size 0"}},
		{"no in-flight", with("--max-in-flight", "0"), []string{"max in flight 0"}},
		{"negative handler timeout", with("--handler-timeout=-1s"), []string{"handler timeout -1s"}},
		{"zero commit interval", with("--commit-interval", "0s"), []string{"commit interval 0s"}},
		{"http addr", with("--http-addr", "8080"), []string{`http addr "8080"`}},
		{"status addr", with("--status-addr", "8081"), []string{`status addr "8081"`}},
		{"redis certificate check off", with("--redis", "rediss://r:6380/0?skip_verify=true"), []string{"skip_verify=true turns off the check"}},
		{"SASL PLAIN in clear", with("--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u", "--kafka-sasl-password", "s3cret"),
			[]string{"kafka SASL PLAIN without TLS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := parseRun(t, tt.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "invalid configuration: ") {
				t.Errorf("message %q: want one line starting with \"invalid configuration: \"", msg)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("message %q shows the password", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
				if strings.Count(msg, w) > 1 {
					t.Errorf("message %q repeats %q", msg, w)
				}
			}
		})
	}
}

// TestCommandLine runs the command line in-process for what ends before any
// I/O: usage errors, help and version.
func TestCommandLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string // in the error, or in stdout when code is 0
	}{
		{"no command", nil, 2, `expected one of "run", "dev"`},
		{"unknown flag", []string{"run", "--broker", "b"}, 2, `unknown flag --broker, did you mean "--brokers"?`},
		{"bad duration", []string{"run", "--lease", "soon"}, 2, "--lease"},
		{"bad log level", []string{"run", "--log-level", "loud"}, 2, "--log-level"},
		{"bad log format", []string{"run", "--log-format", "xml"}, 2, "--log-format"},
		{"bad configuration", []string{"run"}, 2, "invalid configuration: brokers: at least one is required"},
		{"help", []string{"--help"}, 0, "Usage: fleet <command>"},
		{"help as a command", []string{"help"}, 0, "Usage: fleet <command>"},
		{"help of a command", []string{"help", "dlq", "list"}, 0, "Usage: fleet dlq list"},
		{"run help names the variables", []string{"run", "--help"}, 0, "($FLEET_BROKERS)"},
		{"version", []string{"version"}, 0, "fleet (devel) (revision unknown"},
		{"reason not known", []string{"dlq", "list", "--brokers", "b:9092", "--topic", "t", "--reason", "bogus"}, 2,
			`--reason must be one of "","decode","unknown_type"`},
		{"redis without a scheme", []string{"run", "--brokers", "b:9092", "--topics", "t", "--group", "g", "--redis", "127.0.0.1:6379"}, 2,
			"did you mean redis://127.0.0.1:6379/0"},
		{"replay without a redis", []string{"dlq", "replay", "--brokers", "b:9092", "--topic", "t"}, 2, "name their Redis with --redis or FLEET_REDIS_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := Run(fleetApp, tt.args, &stdout)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("exit code %d (err %v), want %d", got, err, tt.code)
			}
			text := stdout.String()
			if err != nil {
				text = oneLine(err)
				if stdout.Len() > 0 {
					t.Errorf("an error also printed %q", stdout.String())
				}
			}
			if !strings.Contains(text, tt.want) {
				t.Errorf("%q lacks %q", text, tt.want)
			}
		})
	}
}

// TestRedisModes parses the URL forms of each topology.
func TestRedisModes(t *testing.T) {
	tests := []struct {
		mode, url string
		addrs     []string
	}{
		{"standalone", "redis://h1:6379/2", []string{"h1:6379"}},
		{"cluster", "redis://user:pw@h1:7000?addr=h2:7001&addr=h3:7002", []string{"h1:7000", "h2:7001", "h3:7002"}},
		{"sentinel", "redis://s1:26379?master_name=mymaster&addr=s2:26379", []string{"s1:26379", "s2:26379"}},
	}
	for _, tt := range tests {
		target, err := parseRedis(tt.mode, tt.url)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.mode, tt.url, err)
		}
		var addrs []string
		switch tt.mode {
		case "standalone":
			addrs = []string{target.standalone.Addr}
		case "cluster":
			addrs = target.cluster.Addrs
			if target.cluster.Password != "pw" || !target.cluster.ContextTimeoutEnabled {
				t.Errorf("cluster options %+v", target.cluster)
			}
		case "sentinel":
			addrs = target.failover.SentinelAddrs
			if target.failover.MasterName != "mymaster" {
				t.Errorf("master %q", target.failover.MasterName)
			}
		}
		if !slices.Equal(addrs, tt.addrs) {
			t.Errorf("%s: addresses %v, want %v", tt.mode, addrs, tt.addrs)
		}
		c := target.client()
		c.Close()
	}
}

// TestHTTPServerBounds: every connection to fleet's HTTP endpoints is
// bounded in time, whatever the client does.
func TestHTTPServerBounds(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Errorf("unbounded HTTP server: %+v", srv)
	}
	if srv.IdleTimeout > 60*time.Second || srv.WriteTimeout > 30*time.Second {
		t.Errorf("idle %v, write %v: too long to hold a connection", srv.IdleTimeout, srv.WriteTimeout)
	}
}

// TestTLSSettings: the lowest TLS versions reach the Kafka dialer and the
// Redis client, and the two insecure settings are accepted only when asked
// for by name.
func TestTLSSettings(t *testing.T) {
	parse := func(args ...string) *runCmd {
		t.Helper()
		var c cli
		p, err := kong.New(&c, kong.Vars{"dev_topic": "payments"}, kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(append([]string{"run"}, append(slices.Clone(required), args...)...)); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		return &c.Run
	}
	c := parse("--kafka-tls", "--kafka-tls-min-version", "1.3", "--redis", "rediss://r:6380/0", "--redis-tls-min-version", "1.3")
	_, _, target, err := c.settings()
	if err != nil {
		t.Fatal(err)
	}
	if v := target.tlsConfig().MinVersion; v != tls.VersionTLS13 {
		t.Errorf("redis TLS min version %x, want 1.3", v)
	}
	d, err := c.kafkaDialer()
	if err != nil || d.TLS.MinVersion != tls.VersionTLS13 {
		t.Errorf("kafka TLS: %+v, %v; want min version 1.3", d, err)
	}
	c = parse("--kafka-tls", "--redis", "rediss://r:6380/0")
	_, _, target, _ = c.settings()
	d, _ = c.kafkaDialer()
	if target.tlsConfig().MinVersion != tls.VersionTLS12 || d.TLS.MinVersion != tls.VersionTLS12 {
		t.Errorf("default min versions: redis %x, kafka %x; want 1.2", target.tlsConfig().MinVersion, d.TLS.MinVersion)
	}
	c = parse("--redis", "rediss://r:6380/0?skip_verify=true", "--redis-tls-insecure-skip-verify")
	if _, _, target, err = c.settings(); err != nil || !target.insecure() {
		t.Errorf("skip_verify allowed by name: %v, insecure %v", err, target.insecure())
	}
	c = parse("--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u", "--kafka-sasl-password", "p", "--kafka-sasl-allow-plaintext")
	if _, _, _, err := c.settings(); err != nil {
		t.Errorf("PLAIN without TLS allowed by name: %v", err)
	}
}

// TestHTTPHandlerSettings: routes come from repeated flags or the variable,
// comma-separated; the credential from a file or the variable, never both;
// what cannot work is refused at start with every problem named.
func TestHTTPHandlerSettings(t *testing.T) {
	parse := func(t *testing.T, args ...string) (httpHandlers, error) {
		t.Helper()
		var c cli
		p, err := kong.New(&c, kong.Vars{"dev_topic": "payments"}, kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(append(append([]string{"run"}, required...), args...)); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		if _, _, _, err := c.Run.settings(); err != nil {
			return httpHandlers{}, err
		}
		return c.Run.httpHandlerFlags.settings()
	}
	t.Run("flags", func(t *testing.T) {
		h, err := parse(t, "--http-handler", "inventory.*=http://127.0.0.1:8081/events", "--http-handler", "payment.captured=https://pay.internal/h")
		if err != nil || len(h.endpoints) != 2 || h.endpoints[1].Pattern != "payment.captured" || h.options.AuthValue != "" {
			t.Fatalf("%+v, %v", h, err)
		}
	})
	t.Run("variable", func(t *testing.T) {
		t.Setenv("FLEET_HTTP_HANDLERS", "inventory.*=http://127.0.0.1:8081/events,payment.*=http://127.0.0.1:8082/")
		t.Setenv("FLEET_HTTP_HANDLER_TOKEN", "t0ken")
		h, err := parse(t)
		if err != nil || len(h.endpoints) != 2 || h.options.AuthHeader != "Authorization" || h.options.AuthValue != "Bearer t0ken" {
			t.Fatalf("%+v, %v", h, err)
		}
	})
	t.Run("a header of its own", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte("k3y\nignored\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := parse(t, "--http-handler", "a=http://h/", "--http-handler-token-file", file, "--http-handler-header", "X-Api-Key")
		if err != nil || h.options.AuthHeader != "X-Api-Key" || h.options.AuthValue != "k3y" {
			t.Fatalf("%+v, %v", h, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte("k3y"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("FLEET_HTTP_HANDLER_TOKEN", "s3cret")
		_, err := parse(t, "--http-handler", "inventory.*", "--http-handler", "b=ftp://h/", "--http-handler-token-file", file,
			"--http-handler-max-response-bytes", "0")
		for _, want := range []string{"want TYPE_PATTERN=URL", "want http or https", "given twice", "response limit 0"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to name %q", err, want)
			}
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the credential: %v", err)
		}
	})
}
