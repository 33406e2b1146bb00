// Package consumer is the engine: it consumes Kafka topics as a member of a
// consumer group, decodes CloudEvents, and runs every event through the
// idempotency protocol (package dedupe) and its handler (package handlers).
//
// # Lifecycle
//
// [Engine.Run] joins the group with kafka-go's ConsumerGroup. For every
// generation it starts one function with Generation.Start that, for each
// assigned partition, runs a reader and a pipeline:
//
//	fetch ─► batch ─► decode ─► claim the batch (one store round trip)
//	      ─► lanes (one key's events in offset order, keys in parallel)
//	      ─► handler ─► complete (group commit: one round trip for all waiting)
//	      ─► watermark ─► CommitOffsets every CommitInterval
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
//   - Reader.ReadMessage commits before processing when a GroupID is set; the
//     engine uses partition readers and FetchMessage, and commits itself.
//   - Reader{GroupID} gives no revocation signal; ConsumerGroup and
//     Generation do, which is why the engine uses them.
//   - A struct-literal kafka.Writer waits for no acknowledgement at all;
//     [NewPublisher] sets RequireAll.
//   - kafka.NewReader panics on a bad config; [Config.Validate] runs first.
package consumer
