package handlers

import "context"

// View reads the projections a handler maintains, so that it can decide
// what to stage (a state machine checks the current state before a
// transition). The engine runs the events of one key one after another, so
// a handler keyed by its aggregate reads what the previous event of that
// aggregate completed. Implementations: dedupe.RedisView, and the in-memory
// state of package handlertest.
type View interface {
	// Get returns the string at key; "" when it does not exist.
	Get(ctx context.Context, key string) (string, error)
	// HGetAll returns the fields of the hash at key; empty when it does not
	// exist.
	HGetAll(ctx context.Context, key string) (map[string]string, error)
}
