package dedupe

import (
	"encoding/binary"
	"encoding/hex"

	"github.com/cespare/xxhash/v2"

	"github.com/fleetworks/fleet/handlers"
)

// PreviousFingerprint is the payload fingerprint of earlier versions of
// fleet, which records of the previous layout hold (see [PreviousKey]): the
// type, subject, data content type and data, byte for byte, each
// length-prefixed, 16 hex characters of xxhash64. Claims compare it with
// such a record; new records hold handlers.Fingerprint.
func PreviousFingerprint(ev *handlers.Event) string {
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
