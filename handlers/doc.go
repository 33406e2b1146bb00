// Package handlers is the domain core of fleet: the event a handler sees, the
// handler API, the router that maps event types to handlers, the error kinds a
// handler can return, and the staged effects that the idempotency store applies
// atomically with completion.
//
// It imports no Kafka, Redis or Prometheus package; a test keeps it that way.
//
// # What "once" means for a handler
//
// A handler may run more than once for the same event: when it fails, when a
// worker crashes before completing, or when its lease is lost. What fleet
// guarantees is that
//
//   - a successful run is recorded at most once per (group, source, id); a
//     duplicate that arrives after it is acknowledged without calling the
//     handler;
//   - Redis effects staged on the [Tx] are applied exactly once, in the same
//     atomic step that records the success; effects staged by a run that fails
//     or loses its lease are discarded;
//   - external effects (calls to other services) should carry
//     [Tx.IdempotencyKey] and [Tx.Fence] downstream: the fence grows with every
//     takeover, so a downstream system can refuse a stale writer.
//
// # Errors
//
// An error returned by a handler is retryable unless it is wrapped with
// [Permanent]. Retryable errors are retried in place with backoff and then
// dead-lettered; permanent errors are dead-lettered at once. A panic is
// recovered by [Recover] and treated as a retryable error.
//
// # Middleware order
//
// The engine wraps every handler as Recover(Timeout(handler)): the timeout
// bounds one attempt, and a panic anywhere inside becomes an error. Retries,
// metrics and the idempotency protocol live outside, in the engine.
package handlers
