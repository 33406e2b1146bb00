package dedupe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// RateLimits holds fleet-wide limits per event type in Redis, shared by
// every worker of a consumer group: github.com/go-redis/redis_rate, a GCRA
// in one Lua script, keyed rate:fleet:{<group>:<type>}.
type RateLimits struct {
	limiter *redis_rate.Limiter
	group   string
	limits  map[string]redis_rate.Limit
}

// ParseRateLimits reads "TYPE=N/UNIT,…" (UNIT s, m or h): at most N
// handler runs of events of that type per unit, across the fleet, with a
// burst of N.
func ParseRateLimits(s string) (map[string]redis_rate.Limit, error) {
	limits := map[string]redis_rate.Limit{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		typ, rate, ok := strings.Cut(f, "=")
		num, unit, ok2 := strings.Cut(rate, "/")
		n, err := strconv.Atoi(strings.TrimSpace(num))
		if !ok || !ok2 || err != nil || n < 1 || strings.TrimSpace(typ) == "" {
			return nil, fmt.Errorf("rate limit %q: want TYPE=N/s, TYPE=N/m or TYPE=N/h with N at least 1", f)
		}
		typ = strings.TrimSpace(typ)
		if _, dup := limits[typ]; dup {
			return nil, fmt.Errorf("rate limit for %s given twice", typ)
		}
		switch strings.TrimSpace(unit) {
		case "s":
			limits[typ] = redis_rate.PerSecond(n)
		case "m":
			limits[typ] = redis_rate.PerMinute(n)
		case "h":
			limits[typ] = redis_rate.PerHour(n)
		default:
			return nil, fmt.Errorf("rate limit %q: unit %q is not s, m or h", f, unit)
		}
	}
	return limits, nil
}

// NewRateLimits returns the limits of a consumer group on c.
func NewRateLimits(c redis.UniversalClient, group string, limits map[string]redis_rate.Limit) *RateLimits {
	return &RateLimits{limiter: redis_rate.NewLimiter(c), group: group, limits: limits}
}

// Limited reports whether typ has a limit.
func (r *RateLimits) Limited(typ string) bool {
	_, ok := r.limits[typ]
	return ok
}

// Reserve asks for one run of an event of type typ: it answers 0 when the
// run may start now (and counts it), or how long to wait before asking
// again. Types without a limit always get 0, without a round trip.
func (r *RateLimits) Reserve(ctx context.Context, typ string) (time.Duration, error) {
	limit, ok := r.limits[typ]
	if !ok {
		return 0, nil
	}
	res, err := r.limiter.Allow(ctx, "fleet:{"+r.group+":"+typ+"}", limit)
	if err != nil {
		return 0, err
	}
	if res.Allowed > 0 {
		return 0, nil
	}
	return max(res.RetryAfter, time.Millisecond), nil
}
