package dedupe

import (
	"encoding/binary"
	"encoding/hex"

	"github.com/cespare/xxhash/v2"

	"github.com/fleetworks/fleet/handlers"
)

// Fingerprint identifies an event's payload: its type, subject, data content
// type and data, each length-prefixed so that no two different payloads
// concatenate alike. It is 16 hex characters of xxhash64: not a security
// boundary (a producer that controls the id controls the event anyway), and
// small, because every record keeps it for the whole dedupe window.
func Fingerprint(ev handlers.Event) string {
	var d xxhash.Digest
	d.Reset()
	var n [8]byte
	for _, s := range [...]string{ev.Type, ev.Subject, ev.DataContentType} {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		_, _ = d.Write(n[:]) // an xxhash digest never fails to write
		_, _ = d.WriteString(s)
	}
	binary.LittleEndian.PutUint64(n[:], uint64(len(ev.Data)))
	_, _ = d.Write(n[:])
	_, _ = d.Write(ev.Data)
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], d.Sum64())
	return hex.EncodeToString(sum[:])
}
