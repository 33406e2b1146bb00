// Package effects is the one meaning, outside Redis, of the effects a
// handler stages (handlers.Op): an in-memory key space of strings and
// hashes that applies the effects of one run all or none, with Redis's own
// rules, and the rule of which keys a handler may write at all.
//
// Redis gives effects their meaning in the completion script of package
// dedupe. Everything else that applies effects uses this package and no
// copy of it: dedupe.Memory, the in-memory store, and handlers/handlertest,
// the kit handler authors test with. Lua in Redis and Go here are kept the
// same by the contract suite (dedupe/dedupetest) and by the differential
// test TestEffectsMatchRedis in package dedupe, which runs random effects
// through a real redis-server, Memory and the kit and compares every answer
// and every key; where they differ, Redis is right.
//
// Why a package of its own rather than the kit running handlers through
// dedupe.Memory: package dedupe imports go-redis, and nothing under
// handlers/ may depend on infrastructure (TestNoInfrastructureImports in
// package handlers lists the dependencies of handlers/..., the kit's
// included). This package depends on package handlers and the standard
// library alone, so both the store and the kit can share it.
//
// The rules, as Redis has them:
//
//   - integers are Redis's: optional '-', no '+', no leading zeros, no
//     "-0", no spaces, within 64 bits; an increment that leaves the range is
//     refused (see parseInt);
//   - SET replaces a key of any type and clears its time to live; DEL
//     deletes; INCRBY and HSET-like effects keep a time to live;
//   - string effects refuse a hash and hash effects a string;
//   - a hash whose last field is deleted is deleted, time to live and all;
//     HDEL on a missing key creates nothing;
//   - PEXPIRE of a missing key does nothing; of zero or less milliseconds
//     (a time to live under one millisecond counts as zero) deletes the
//     key;
//   - times are whole milliseconds, and a key lives until the clock has
//     passed its deadline, as in Redis.
package effects
