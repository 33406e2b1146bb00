package cli

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/internal/console"
)

// AuditStream is the Redis stream where fleet console keeps its audit log
// (besides stderr), capped at about --audit-stream-max entries.
const AuditStream = "fleet:console:audit"

// auditStream appends the console's audit entries to a capped Redis
// stream, one entry per action, its fields those of the stderr line.
type auditStream struct {
	c   redis.Cmdable
	key string
	max int64
}

var _ console.AuditSink = auditStream{}

// Append implements console.AuditSink.
func (a auditStream) Append(ctx context.Context, e console.AuditEntry) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return a.c.XAdd(ctx, &redis.XAddArgs{Stream: a.key, MaxLen: a.max, Approx: true, Values: []any{
		"time", e.Time.UTC().Format(time.RFC3339Nano), "who", e.Who, "role", e.Role, "action", e.Action,
		"target", e.Target, "outcome", e.Outcome, "detail", e.Detail,
	}}).Err()
}
