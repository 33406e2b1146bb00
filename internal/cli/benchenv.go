package cli

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
)

// embeddedBroker is a one-broker kfake cluster holding topics, each with
// partitions partitions (1 to 4096: the callers check), and creating
// others on first use.
func embeddedBroker(partitions int, topics ...string) (*kfake.Cluster, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topics...) /* #nosec G115 -- checked by the callers: 1 to 4096 */, kfake.AllowAutoTopicCreation())
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return cluster, nil
}

// benchEnv is what one measurement of bench-curves runs against: a fresh
// embedded broker and a fresh private redis-server, its keyspace sized
// for the keys the measurement adds (see presize), so that neither
// carries what an earlier measurement left.
type benchEnv struct {
	brokers  []string
	redisURL string
	rdb      *redis.Client
	closers  []func()
}

// startBenchEnv starts a broker with topics of partitions partitions and a
// Redis presized for keys more keys. Close stops both, also after an
// error.
func startBenchEnv(ctx context.Context, partitions int, topics []string, keys int) (env *benchEnv, err error) {
	env = &benchEnv{}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	cluster, err := embeddedBroker(partitions, topics...)
	if err != nil {
		return env, err
	}
	env.closers = append(env.closers, cluster.Close)
	env.brokers = cluster.ListenAddrs()
	url, stopRedis, err := startRedis()
	if err != nil {
		return env, err
	}
	env.closers = append(env.closers, stopRedis)
	env.redisURL = url
	opts, err := parseRedisURL(url)
	if err != nil {
		return env, err
	}
	env.rdb = redis.NewClient(opts)
	env.closers = append(env.closers, func() { _ = env.rdb.Close() })
	if err := presize(ctx, env.rdb, keys); err != nil {
		return env, fmt.Errorf("size the private Redis: %w", err)
	}
	if err := finishRehash(ctx, env.rdb); err != nil {
		return env, fmt.Errorf("size the private Redis: %w", err)
	}
	return env, nil
}

// finishRehash looks up each placeholder key that presize added to an
// empty Redis once. Redis moves its key tables to the grown ones a bucket
// per lookup, and frees the old tables when done; its cron moves them at
// 1 ms per 100 ms (Redis 7.0: 94 s for tables of 2^21 buckets), so without
// the lookups a measurement's first writes would free megabytes, and a
// used_memory delta taken across them would fall short (the first points
// of a fill came out negative), and its first run would pay for the move:
// each lookup searches both tables while it lasts (fleet bench's first
// fleet run used 4.2–5.8 s of Redis CPU where the same run after it used
// 2.6–2.7 s).
func finishRehash(ctx context.Context, rdb *redis.Client) error {
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return err
	}
	touch := redis.NewScript(`
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('EXISTS', 'fleet-bench:placeholder:' .. i)
end
return 1`)
	const chunk = 50000
	for lo := int64(0); lo < n; lo += chunk {
		if err := touch.Run(ctx, rdb, nil, lo, min(lo+chunk, n)-1).Err(); err != nil {
			return err
		}
	}
	return nil
}

// Close stops what startBenchEnv started, the last started first.
func (e *benchEnv) Close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.closers = nil
}
