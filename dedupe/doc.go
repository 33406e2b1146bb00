// Package dedupe is the idempotency store: the claim / extend / complete /
// release protocol that lets fleet run a handler at most once per event and
// apply its Redis effects exactly once.
//
// # Record layout
//
// One Redis hash per (consumer group, event source, event id) and aggregate,
// at the key built by [Key] and [RecordKey]:
//
//	fleet:idem:{<aggregate>}:<identity>
//
// The identity is handlers.IdempotencyKey: a digest of group, source and id,
// so that parts holding separators never collide and the key stays short.
// The aggregate (the Kafka message key, or the id) is the hash tag, so that
// on a cluster the record shares the slot of the aggregate's projections;
// every effect of a completion must carry it as its hash tag
// (handlers.BoundTo), so that a copy of an event under another message key,
// which has a record of its own in its own slot, can never change the first
// key's state. Fields have short names, since done records are kept for the
// whole dedupe window:
//
//	s  state: p processing, d done, r released
//	f  fencing token; grows on every claim that acquires, never reset
//	   while the record lives
//	o  owner token of the current claim (processing only)
//	l  lease deadline, ms, from the Redis clock (processing only)
//	a  attempts: claims that acquired, across restarts and rebalances
//	p  payload fingerprint (handlers.Fingerprint), the first claim's, kept
//	   for the life of the record
//	r  stored result (done, only when non-empty)
//
// The key's time to live is the dedupe window (Config.Retention), renewed on
// every write. The lease is a field, not the key's TTL, so the fence and the
// attempt count survive an expired lease.
//
// With Config.PackDoneRecords a done record is packed: the completion
// deletes the hash and writes its fence, attempts, fingerprint and result
// as one field of a hash of its aggregate and slice (packed.go):
//
//	fleet:idem:{<aggregate>}:~<slice>  <identity>  <fingerprint, fence, attempts[, result]>
//
// Redis holds events/s × retention of done records, and a hash of its own
// costs about 230 bytes of used_memory where a packed record costs 40 to
// 90, for more Redis CPU per event. A packed record is kept at least a
// retention (and at most a retention, a slice, half a retention by
// default, and a second) after it was done. The packed record is the
// completion's first write (HSETNX, which a bucket key of another type
// refuses), and is taken out again when an effect then fails. Otherwise, and for a result longer than a
// listpack value, the record is done in place, keeping only s, f, a, p and
// r.
//
// Owner tokens come from [Owners] (the caller's, or the store's own): a
// random prefix (8 bytes from crypto/rand, hex) and a counter, one token per
// claim attempt. So two claims by one process are two owners, and a claim
// re-sent, by go-redis or by a caller whose call timed out, is known by its
// token.
//
// # Protocol
//
//   - Claim: absent → processing with fence 1 (Acquired); a fingerprint other
//     than the record's, in any state → Conflict (the first payload stands);
//     done → Duplicate; processing under the claim's own owner token → the
//     same Acquired again (a resent claim); processing under a live lease →
//     Busy (with the time the lease still runs); processing under an expired
//     lease → Acquired with the next fence and TakenOver; released → Acquired
//     with the next fence.
//   - Extend: owner- and fence-checked; moves the lease deadline.
//   - Complete: owner- and fence-checked; applies the staged effects, marks the
//     record done and drops the owner and lease, in one script. It is
//     accepted after the lease deadline as long as nobody took the event
//     over. Every effect is checked before the first write (a Lua script is
//     not rolled back): an effect that Redis would refuse makes the item
//     invalid and nothing is written.
//   - Release: owner- and fence-checked; keeps fence and attempts.
//   - Unclaim: Release for a claim whose handler never ran; gives the attempt
//     back.
//
// With Config.MinReplicas, a completion batch succeeds only once WAIT hears
// that many replicas hold it, on every node the batch touched; otherwise the
// call fails with ErrNotReplicated and is repeated by the caller (safe), so
// that a failover to a replica cannot lose a completion whose offset was
// committed.
//
// # Upgrades
//
// Done records of their own (every version before packing, and stores
// that do not pack) are read where they are: a claim looks at the record
// key first, and finds them there. Once a store has packed (SliceKey is
// set), every store reads the buckets too.
//
// Records of the layout before (fleet:idem:{<aggregate>}:<group>:<source>:<id>,
// with a fingerprint of the raw bytes) are read, never written: a claim that
// finds no record consults the event's previous record, in the same slot and
// the same script. Done there is a Duplicate (or a Conflict, by the previous
// fingerprint), a live lease is Busy, and a released or expired one is
// continued: the new record takes its fence and attempt count, and the
// previous record is deleted, so its owner, if one is still running, has
// lost it. A previous key that would read as a current record key (see
// [PreviousKey]) is not consulted. Previous records are consulted for a
// retention window and an hour after the current layout was first served
// on the Redis ([LayoutKey]): then they have all expired.
//
// Every script is safe to run twice with the same arguments (see scripts.go).
//
// # Errors
//
// A batch call returns an error only when the store could not be asked (the
// connection, a timeout, a server that is loading, out of memory or read
// only): then no answer is known, nothing may be assumed, and the caller
// retries (every call is safe to repeat). Otherwise it answers per item:
//
//   - ErrLeaseLost: the claim is not ours any more (taken over, or completed
//     or released by another run); nothing was applied.
//   - an error wrapping ErrInvalid: the request can never succeed (an effect
//     Redis would refuse, keys of several slots on a cluster); nothing was
//     applied and the lease is still held.
//
// A claim the store can never answer (a record key that holds something
// else, keys of several cluster slots) is answered Invalid with a reason; the
// rest of its batch is answered as usual.
//
// # Implementations
//
// [Redis] needs maxmemory-policy noeviction (see
// [Redis.CheckMaxmemoryPolicy]): an evicted record lets a duplicate run
// again. Call [Redis.Load] at start-up. [Memory] implements the same protocol
// in memory with an injected clock; both pass the contract suite in package
// dedupetest.
package dedupe
