// Package consumer is the engine: it consumes Kafka topics as a member of a
// consumer group, decodes CloudEvents, and runs every event through the
// idempotency protocol (package dedupe) and its handler (package handlers).
//
// # Lifecycle, and where each stage lives
//
// [Engine.Run] (engine.go) makes sure the retry and dead-letter topics exist
// (topics.go) and joins the group with kafka-go's ConsumerGroup. For every
// generation (generation.go) it starts one function with Generation.Start
// that runs each assigned partition (partition.go) and commits the
// watermarks (watermark.go) every CommitInterval. A source partition reads
// for the whole generation; a partition of a retry tier or parked topic
// sleeps while it has nothing to read, with no reader, goroutine or buffer
// (sleep.go), and the generation's watcher (watch.go, watchpoll.go) starts
// a session of it when something is written to it or the retry message it
// waits for is due. One event's way through a partition:
//
//	reader.go     a connection to the partition's leader (leaders.go)
//	intake.go     fetch, wait for a retry tier's not-before time, collect a batch
//	              (budget.go: the byte budget; a slot per event in flight, the
//	              partition's and the worker's)
//	dispatch.go   decode (decode.go; structured mode: structured.go), check the
//	              limits (limits.go), route;
//	claims.go     claim the batch in one store round trip (groupcommit.go
//	              gathers every partition's claims into one)
//	keyqueue.go   one key's events in offset order, keys in parallel, run by
//	lanes.go      the lanes, up to Config.Lanes, each ending when nothing is ready
//	process.go    each event's lifecycle, a loop over decide (lifecycle.go:
//	              every rule, a pure function) and its actions:
//	attempt.go    the handler run under the claim (rate limit, timeout) and
//	              its completion (group commit: groupcommit.go)
//	leases.go     meanwhile the lease keeper extends every claim held (its
//	              heartbeat runs while the partition holds claims)
//	outcome.go    finish, release, retry tier or dead letter (the messages:
//	              deadletter.go; the writer: publisher.go), then the watermark
//	order.go      ordered retries (docs/ordering.md): the gate of a key;
//	park.go       an event behind its key's head waits in the gate's queue;
//	headend.go    a head's end releases the next, through <topic>.parked
//	              (parked.go: the queued message); gatewatch.go reads the
//	              gates for /status and the gauges
//
// The delivery and its attempt (delivery.go, attempt.go) carry an event
// through these stages. Every retry of a call to Kafka or the store goes
// through one helper (backoff.go); the drain (drain.go) is a generation's
// stop signal. health.go and status.go answer /healthz, /readyz and
// /status; metrics.go holds the metrics. With Config.TracerProvider,
// tracing.go traces each event: a span per event, a child of the
// traceparent it carries, with spans for its claims, handler runs and
// completions.
//
// When the generation ends (a rebalance) or Run's context is cancelled
// (SIGTERM), the engine drains: fetching stops, events not yet started are
// released, running handlers get DrainTimeout to finish, the watermarks are
// committed, and only then does the function return. A partition's pipeline
// never returns on a per-event error: with kafka-go, any function started on
// a generation that returns ends the generation for every partition.
//
// # Guarantees
//
//   - An offset is committed only when every earlier offset of its partition
//     is done, a duplicate, or acknowledged by the dead-letter topic.
//   - A handler runs only under a claim. While the store does not answer, no
//     claim is made, no handler starts, no offset moves, and [Engine.Ready]
//     reports the store as unavailable; the engine retries with backoff.
//   - A retryable failure releases the claim and retries in place with
//     exponential backoff and jitter; the attempt count lives in the store, so
//     restarts do not reset it. Past MaxAttempts, and at once for permanent
//     errors, unknown types, undecodable messages and payload conflicts, the
//     message goes to <topic>.dlq with the headers in deadletter.go.
//   - A running handler's lease is extended every Lease/3. If an extension or
//     the completion is refused, the handler's context is cancelled, its
//     effects are dropped, fleet_lease_lost_total counts it, and the event is
//     claimed again to learn what became of it.
//
// # Sharp edges of kafka-go, and where they are handled
//
//   - Reader.ReadMessage commits before processing when a GroupID is set;
//     the engine reads partitions itself, and commits itself.
//   - Reader{GroupID} gives no revocation signal; ConsumerGroup and
//     Generation do, which is why the engine uses them.
//   - A partition Reader dials through Dialer.DialLeader, which reads the
//     metadata of the partition's whole topic at every dial, and holds two
//     goroutines and a queue of 100 messages: a worker assigned a thousand
//     partitions decodes a thousand times the metadata of a thousand
//     partitions. The engine reads a partition over a kafka.Conn to the
//     leader that one metadata request per generation names (reader.go).
//   - Client.ListOffsets sends one request per partition; the watcher asks
//     about all sleeping partitions with one fetch per broker instead.
//   - A struct-literal kafka.Writer waits for no acknowledgement at all;
//     [NewPublisher] sets RequireAll.
package consumer
