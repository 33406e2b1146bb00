package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

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

// redisTLS is the TLS material for a rediss:// URL: a CA bundle for the
// server's certificate and an optional client certificate.
type redisTLS struct {
	caFile, certFile, keyFile string
}

// apply adds the TLS material to the target's TLS configuration, which a
// rediss:// URL created.
func (r redisTLS) apply(t redisTarget) error {
	if r == (redisTLS{}) {
		return nil
	}
	var cfg *tls.Config
	switch t.mode {
	case redisCluster:
		cfg = t.cluster.TLSConfig
	case redisSentinel:
		cfg = t.failover.TLSConfig
	default:
		cfg = t.standalone.TLSConfig
	}
	if cfg == nil {
		return errors.New("redis TLS files need a rediss:// URL")
	}
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
