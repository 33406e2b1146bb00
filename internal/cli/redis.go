package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis topologies, the values of --redis-mode.
const (
	redisStandalone = "standalone"
	redisCluster    = "cluster"
	redisSentinel   = "sentinel"
)

// redisTarget is a parsed --redis URL in its --redis-mode.
type redisTarget struct {
	mode       string
	standalone *redis.Options
	cluster    *redis.ClusterOptions
	failover   *redis.FailoverOptions
}

// parseRedis parses url for mode:
//
//   - standalone: redis://[user:password@]host:port/db or rediss://…
//   - cluster: redis://host:port?addr=host2:port2&addr=host3:port3 (any
//     node; the others are found from it);
//   - sentinel: redis://[user:password@]sentinel:port?master_name=NAME&addr=sentinel2:port
//     (the credentials are the Sentinels'; the master's go in the
//     parameters username and password).
//
// Every client honours context deadlines: the engine bounds heartbeats,
// releases and probes with them (a heartbeat must not outlive a third of
// the lease), and go-redis ignores them unless told. Errors never repeat
// the URL, which may hold a password.
func parseRedis(mode, s string) (redisTarget, error) {
	t := redisTarget{mode: mode}
	var err error
	switch mode {
	case redisStandalone, "":
		t.mode = redisStandalone
		if t.standalone, err = redis.ParseURL(s); err == nil {
			t.standalone.ContextTimeoutEnabled = true
		}
	case redisCluster:
		if t.cluster, err = redis.ParseClusterURL(s); err == nil {
			t.cluster.ContextTimeoutEnabled = true
		}
	case redisSentinel:
		if t.failover, err = redis.ParseFailoverURL(s); err == nil {
			if t.failover.MasterName == "" {
				err = errors.New("a sentinel URL needs the parameter master_name")
			}
			t.failover.ContextTimeoutEnabled = true
		}
	default:
		err = fmt.Errorf("mode %q: standalone, cluster or sentinel", mode)
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if !strings.Contains(s, "://") && !strings.Contains(s, "@") {
			// host:port, as redis-cli takes it: say what fleet wants.
			return redisTarget{}, fmt.Errorf("redis URL %q has no scheme: did you mean redis://%s/0 (or rediss:// for TLS)?", s, s)
		}
		return redisTarget{}, fmt.Errorf("redis URL: %s", scrub(err.Error(), s))
	}
	return t, nil
}

// scrub removes s from msg: some parse errors quote the whole URL.
func scrub(msg, s string) string {
	if s != "" {
		msg = strings.ReplaceAll(msg, s, "<the URL>")
	}
	return msg
}

// redisConn are the Redis settings of every command that talks to the
// idempotency store. Flag and variable names are a contract.
type redisConn struct {
	Redis                      string `env:"FLEET_REDIS_URL" help:"Idempotency store, a redis:// or rediss:// URL (for a cluster: redis://host:port?addr=host2:port2&addr=…; for Sentinel: redis://sentinel:port?master_name=NAME&addr=…). fleet run and fleet keys default to redis://127.0.0.1:6379/0; fleet dlq replay needs it."`
	RedisMode                  string `name:"redis-mode" env:"FLEET_REDIS_MODE" default:"standalone" enum:"standalone,cluster,sentinel" help:"Redis topology: standalone, cluster or sentinel."`
	RedisTLSCAFile             string `name:"redis-tls-ca-file" env:"FLEET_REDIS_TLS_CA_FILE" help:"PEM bundle of the CAs that signed Redis's certificate, for a rediss:// URL (default: the system roots)."`
	RedisTLSCertFile           string `name:"redis-tls-cert-file" env:"FLEET_REDIS_TLS_CERT_FILE" help:"Client certificate (PEM) for Redis TLS."`
	RedisTLSKeyFile            string `name:"redis-tls-key-file" env:"FLEET_REDIS_TLS_KEY_FILE" help:"Client key (PEM) for Redis TLS."`
	RedisTLSMinVersion         string `name:"redis-tls-min-version" env:"FLEET_REDIS_TLS_MIN_VERSION" default:"1.2" enum:"1.2,1.3" help:"Lowest TLS version accepted from Redis: 1.2 or 1.3."`
	RedisTLSInsecureSkipVerify bool   `name:"redis-tls-insecure-skip-verify" env:"FLEET_REDIS_TLS_INSECURE_SKIP_VERIFY" help:"Accept a rediss:// URL with skip_verify=true: Redis's certificate is then not checked, and anyone on the path can read and change the idempotency records. A warning says so at every start."`
}

// target parses the settings: the URL in its mode, and its TLS material and
// policy. A rediss:// URL asking not to verify the server is refused unless
// --redis-tls-insecure-skip-verify allows it.
func (r *redisConn) target() (redisTarget, error) {
	url := r.Redis
	if url == "" {
		url = defaultRedisURL
	}
	t, err := parseRedis(r.RedisMode, url)
	if err != nil {
		return redisTarget{}, err
	}
	p := redisTLS{caFile: r.RedisTLSCAFile, certFile: r.RedisTLSCertFile, keyFile: r.RedisTLSKeyFile,
		minVersion: tlsVersions[r.RedisTLSMinVersion], allowInsecure: r.RedisTLSInsecureSkipVerify}
	if err := p.apply(t); err != nil {
		return redisTarget{}, err
	}
	return t, nil
}

// insecure reports whether the settings turn certificate checks off.
func (t redisTarget) insecure() bool {
	cfg := t.tlsConfig()
	return cfg != nil && cfg.InsecureSkipVerify
}

// defaultRedisURL is the store of fleet run and fleet keys when none is
// given.
const defaultRedisURL = "redis://127.0.0.1:6379/0"

// quiet makes the target's client fit a command a person runs and waits
// for: no retries, a short dial, and none of go-redis's own logging (one
// line per failed dial of its pool), so that an unreachable Redis is one
// line of fleet's, at once.
func (t redisTarget) quiet() redisTarget {
	redis.SetLogger(quietLogger{})
	switch t.mode {
	case redisCluster:
		t.cluster.MaxRetries, t.cluster.DialTimeout = -1, 2*time.Second
	case redisSentinel:
		t.failover.MaxRetries, t.failover.DialTimeout = -1, 2*time.Second
	default:
		t.standalone.MaxRetries, t.standalone.DialTimeout = -1, 2*time.Second
	}
	return t
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// tlsVersions are the values of the --…-tls-min-version flags.
var tlsVersions = map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// redisTLS is the TLS material and policy for a rediss:// URL: a CA bundle
// for the server's certificate, an optional client certificate, the lowest
// version, and whether skip_verify=true may stand.
type redisTLS struct {
	caFile, certFile, keyFile string
	minVersion                uint16
	allowInsecure             bool
}

// tlsConfig is the target's TLS configuration, which a rediss:// URL
// created; nil for redis://.
func (t redisTarget) tlsConfig() *tls.Config {
	switch t.mode {
	case redisCluster:
		return t.cluster.TLSConfig
	case redisSentinel:
		return t.failover.TLSConfig
	}
	return t.standalone.TLSConfig
}

// apply adds the TLS material and policy to the target's TLS configuration.
func (r redisTLS) apply(t redisTarget) error {
	cfg := t.tlsConfig()
	if cfg == nil {
		if r.caFile != "" || r.certFile != "" || r.keyFile != "" {
			return errors.New("redis TLS files need a rediss:// URL")
		}
		return nil
	}
	if cfg.InsecureSkipVerify && !r.allowInsecure {
		return errors.New("redis URL: skip_verify=true turns off the check of Redis's certificate: give the CA with --redis-tls-ca-file, or allow it with --redis-tls-insecure-skip-verify")
	}
	cfg.MinVersion = max(r.minVersion, tls.VersionTLS12)
	if r.caFile != "" {
		pem, err := os.ReadFile(r.caFile)
		if err != nil {
			return fmt.Errorf("redis TLS CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("redis TLS CA file %s: no PEM certificate in it", r.caFile)
		}
	}
	if (r.certFile == "") != (r.keyFile == "") {
		return errors.New("redis TLS: give both the client certificate and its key, or neither")
	}
	if r.certFile != "" {
		cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
		if err != nil {
			return fmt.Errorf("redis TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// client opens a client for the target.
func (t redisTarget) client() redis.UniversalClient {
	switch t.mode {
	case redisCluster:
		return redis.NewClusterClient(t.cluster)
	case redisSentinel:
		return redis.NewFailoverClient(t.failover)
	}
	return redis.NewClient(t.standalone)
}

// addr is the first address of the target, for tests and messages.
func (t redisTarget) addr() string {
	switch t.mode {
	case redisCluster:
		return t.cluster.Addrs[0]
	case redisSentinel:
		return t.failover.SentinelAddrs[0]
	}
	return t.standalone.Addr
}

// parseRedisURL parses a standalone redis:// or rediss:// URL.
func parseRedisURL(s string) (*redis.Options, error) {
	t, err := parseRedis(redisStandalone, s)
	if err != nil {
		return nil, err
	}
	return t.standalone, nil
}
