package handlers

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// IdempotencyKey returns the identity of the event (source, id) within a
// consumer group, as 22 URL-safe base64 characters: the first 128 bits of
// SHA-256 over the length-prefixed group, source and id. It depends on
// nothing else, the Kafka message key included, so every copy of an event
// has one key, and distinct events have distinct keys whatever characters
// their parts contain. A cryptographic digest, because a producer that
// could make two identities collide could have another producer's event
// acknowledged as a duplicate of its own.
func IdempotencyKey(group, source, id string) string {
	var buf [256]byte
	b := buf[:0]
	for _, s := range [...]string{identityDomain, group, source, id} {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	sum := sha256.Sum256(b)
	var out [22]byte
	base64.RawURLEncoding.Encode(out[:], sum[:16])
	return string(out[:])
}

// identityDomain separates identity digests from any other use of SHA-256
// over similar input.
const identityDomain = "fleet identity v1"

// Aggregate is the aggregate an event belongs to: its Kafka message key, or
// its id when the message has none. Every Redis key a handler stages for the
// event must carry it as hash tag ("ledger:{<aggregate>}:balance"); see
// [BoundTo].
func (ev Event) Aggregate() string {
	if ev.Key != "" {
		return ev.Key
	}
	return ev.ID
}

// HashTag returns the hash tag of a Redis key as Redis Cluster reads it: the
// text between the first '{' and the first '}' after it, when that text is
// not empty. ok is false for a key without one.
func HashTag(key string) (tag string, ok bool) {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return "", false
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return "", false
	}
	return key[open+1 : open+1+end], true
}

// BoundTo reports whether a staged key belongs to an aggregate: its hash tag
// is exactly the aggregate. The idempotency store refuses effects on any
// other key, so that a copy of an event under another message key (a
// careless producer, an attacker) can never change the first key's state: a
// copy has its own record in its own key's slot, and can only touch keys of
// its own key. An aggregate that contains '}' can bind no key.
func BoundTo(key, aggregate string) bool {
	tag, ok := HashTag(key)
	return ok && tag == aggregate
}
