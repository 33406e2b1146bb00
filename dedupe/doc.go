// Package dedupe is the idempotency store: the claim / extend / complete /
// release protocol that lets fleet run a handler at most once per event and
// apply its Redis effects exactly once.
//
// # Record layout
//
// One Redis hash per (consumer group, event source, event id), at the key
// built by [Key]:
//
//	fleet:idem:{<aggregate>}:<group>:<source>:<id>
//
// with short field names, since done records are kept for the whole dedupe
// window:
//
//	s  state: p processing, d done, r released
//	f  fencing token; grows on every claim that acquires, never reset
//	   while the record lives
//	o  owner token of the current claim (processing only)
//	l  lease deadline, ms, from the Redis clock (processing only)
//	a  attempts: claims that acquired, across restarts and rebalances
//	p  payload fingerprint (see [Fingerprint])
//	r  stored result (done, only when non-empty)
//
// The key's time to live is the dedupe window (Config.Retention), renewed on
// every write. The lease is a field, not the key's TTL, so the fence and the
// attempt count survive an expired lease. A done record keeps only s, f, a, p
// (and r), to stay small: Redis holds events/s × retention × bytes per record.
//
// Owner tokens are made by the store: a random prefix per store (8 bytes from
// crypto/rand, hex) and a counter, one token per claim attempt. So two claims
// by one process are two owners, and a claim re-sent by go-redis is known by
// its token.
//
// # Protocol
//
//   - Claim: absent → processing with fence 1 (Acquired); done → Duplicate, or
//     Conflict when the fingerprint differs; processing under a live lease →
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
// ClaimResult has no per-item error, so a claim that is invalid (an empty key,
// a record key holding something else) fails its whole batch with an error
// that wraps ErrInvalid and names the key.
//
// # Implementations
//
// [Redis] needs maxmemory-policy noeviction (see
// [Redis.CheckMaxmemoryPolicy]): an evicted record lets a duplicate run
// again. Call [Redis.Load] at start-up. [Memory] implements the same protocol
// in memory with an injected clock; both pass the contract suite in package
// dedupetest.
package dedupe
