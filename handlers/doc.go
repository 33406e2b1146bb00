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
//     or loses its lease are discarded. Every staged key must carry the
//     event's aggregate ([Event.Aggregate]) as its hash tag ([BoundTo]): a
//     copy of an event under another Kafka key has a record of its own, and
//     this binding is what keeps it from changing the first key's state;
//   - external effects (calls to other services) should carry
//     [Tx.IdempotencyKey] ([IdempotencyKey]: the group, source and id, and
//     nothing else) and [Tx.Fence] downstream: the fence grows with every
//     takeover, so a downstream system can refuse a stale writer.
//
// The same payload is judged by [Fingerprint]: type, subject, media type and
// data, JSON in its RFC 8785 canonical form. The first payload of an
// identity stands; another one with the same source and id is a conflict.
//
// # Payloads
//
// [JSON] decodes an event's data into a Go type, calls its Validate method
// when it has one, and returns every failure as a permanent error that names
// the field: decode with it rather than by hand, so that every domain
// refuses bad payloads the same way.
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
// The engine calls the [Router] wrapped in [Recover], so a panic in any
// handler becomes an error. The handler timeout is not a middleware: the
// engine runs each attempt under a context of its own whose deadline is the
// timeout, and cancels that context as well when the claim's lease is lost
// or the worker drains, so that one context carries every reason to stop.
// [Timeout] is for a handler that needs a shorter bound than the engine's:
// register Chain(h, Timeout(d)). Retries, metrics and the idempotency
// protocol live outside, in the engine.
package handlers
