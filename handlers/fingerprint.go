package handlers

import (
	"encoding/binary"
	"encoding/hex"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/gowebpki/jcs"
)

// Tags written before the data part of a fingerprint, so that raw bytes never
// hash like a canonical JSON text.
const (
	tagCanonical byte = 'j' // the data is the RFC 8785 (JCS) form of a JSON value
	tagBytes     byte = 'b' // the data is the payload's bytes as received
)

// Fingerprint identifies an event's payload, so that a retry of one event can
// be told from a different event reusing its id. It is 16 lowercase hex
// characters of xxhash64 over four parts, each written as an 8-byte
// little-endian length followed by its bytes:
//
//  1. Type;
//  2. Subject;
//  3. the media type: for a JSON media type (see below), the type/subtype that
//     [mime.ParseMediaType] returns, lower-cased and without parameters; for
//     any other DataContentType, including one that ParseMediaType rejects
//     and the empty one, the string as given, because a parameter such as
//     charset may change what the bytes mean;
//  4. the data, preceded (before its length) by one tag byte: 'j' and the
//     RFC 8785 (JCS) canonical form of Data when the media type is JSON and
//     Data is a JSON text that [jcs.Transform] accepts; otherwise 'b' and
//     Data as is. jcs rejects, so that such data counts as bytes, empty
//     data, invalid UTF-8, duplicate keys, lone surrogates and numbers
//     beyond the range of a float64.
//
// A media type is JSON when ParseMediaType accepts DataContentType and the
// type/subtype is application/json, text/json or ends with "+json".
//
// So a producer that re-serialises a JSON payload on retry (another key
// order, other whitespace, 1.0 for 1, "\u00e9" for "é", a charset parameter)
// keeps the fingerprint, while a change of value changes it. Numbers are
// values as JCS sees them, IEEE 754 doubles: integers beyond 2^53 that round
// to one double fingerprint alike. Like any 64-bit hash it is not a security
// boundary (a producer that controls the id controls the event anyway): it
// only has to tell a producer's retry from a mistake.
//
// Fingerprint is safe for concurrent use. For data already in canonical form
// it allocates only the returned string.
func Fingerprint(ev Event) string {
	mediaType, isJSON := normalizeMediaType(ev.DataContentType)
	tag, data := tagBytes, ev.Data
	if isJSON {
		tag, data = canonicalJSON(ev.Data)
	}
	var d xxhash.Digest
	d.Reset()
	writePart(&d, ev.Type)
	writePart(&d, ev.Subject)
	writePart(&d, mediaType)
	var head [9]byte // the tag, then the length of the data
	head[0] = tag
	binary.LittleEndian.PutUint64(head[1:], uint64(len(data)))
	_, _ = d.Write(head[:])
	_, _ = d.Write(data)
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], d.Sum64())
	var out [16]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// writePart writes s to d, prefixed by its length as 8 little-endian bytes.
func writePart(d *xxhash.Digest, s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	_, _ = d.Write(n[:]) // an xxhash digest never fails to write
	_, _ = d.WriteString(s)
}

// normalizeMediaType returns the media type part of a fingerprint for a
// DataContentType and whether it names JSON: the lower-case type/subtype
// without parameters for JSON, ct as given otherwise (see [Fingerprint]).
func normalizeMediaType(ct string) (string, bool) {
	mt := ct
	if !isPlainMediaType(ct) {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return ct, false
		}
	}
	if mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json") {
		return mt, true
	}
	return ct, false
}

// isPlainMediaType reports whether ct is a type/subtype of lower-case
// letters, digits and "+-." without parameters or spaces: a string that
// [mime.ParseMediaType] would return unchanged, so that the common content
// types need no parsing (and no allocation). It may return false for such a
// string; it never returns true for another.
func isPlainMediaType(ct string) bool {
	slash := strings.IndexByte(ct, '/')
	if slash <= 0 || slash == len(ct)-1 {
		return false
	}
	for i := 0; i < len(ct); i++ {
		c := ct[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '-', c == '.':
		case c == '/' && i == slash:
		default:
			return false
		}
	}
	return true
}

// canonicalJSON returns the data part of a fingerprint for a JSON media type:
// tagCanonical and the JCS form of data when jcs accepts it, tagBytes and data
// otherwise. Data already in canonical form is returned as is, without
// calling jcs.
func canonicalJSON(data []byte) (byte, []byte) {
	if isCanonicalJSON(data) {
		return tagCanonical, data
	}
	if c, err := jcs.Transform(data); err == nil {
		return tagCanonical, c
	}
	return tagBytes, data
}

// maxCanonicalDepth bounds the nesting of arrays and objects that
// isCanonicalJSON follows; deeper input is left to jcs.
const maxCanonicalDepth = 64

// maxCanonicalDigits bounds the digits of an integer that isCanonicalJSON
// accepts: every integer of up to 15 digits is an exact float64, which JCS
// writes back digit for digit.
const maxCanonicalDigits = 15

// isCanonicalJSON reports whether b is exactly one JSON value already in the
// form jcs.Transform gives it, so that Transform would return b unchanged.
// It is conservative: it returns false for some canonical input, namely
// anything beyond
//
//   - objects whose keys are ASCII without escapes or control characters, in
//     strictly increasing byte order (which for ASCII is the UTF-16 order JCS
//     sorts by, and rules out duplicates);
//   - arrays, nested at most maxCanonicalDepth deep;
//   - strings of valid UTF-8 without a backslash or a control character;
//   - integers -?(0|[1-9][0-9]*) of at most 15 digits, other than -0;
//   - true, false and null;
//
// with no whitespace outside strings. It never returns true for input that
// Transform would change or reject. It makes one pass over b (and one more
// over each key, to compare it with the one before) and does not allocate.
func isCanonicalJSON(b []byte) bool {
	var objects uint64 // bit d: the open container at depth d is an object
	// keys[d]: where the latest key of the object at depth d starts, after
	// its quotation mark; 0 before its first key.
	var keys [maxCanonicalDepth]int
	depth, i := 0, 0
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return false
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth == maxCanonicalDepth {
				return false
			}
			i++
			if i < len(b) && b[i] == c+2 { // "{}" or "[]"
				i++
				break
			}
			depth++
			if c == '[' {
				objects &^= 1 << (depth - 1)
				continue
			}
			objects |= 1 << (depth - 1)
			keys[depth-1] = 0
			if i = canonicalKey(b, i, &keys[depth-1]); i < 0 {
				return false
			}
			continue
		case '"':
			i = canonicalString(b, i)
		case 't':
			i = canonicalLiteral(b, i, "true")
		case 'f':
			i = canonicalLiteral(b, i, "false")
		case 'n':
			i = canonicalLiteral(b, i, "null")
		default:
			i = canonicalInteger(b, i)
		}
		if i < 0 {
			return false
		}
		// A value ends before b[i]: close containers until a comma starts
		// the next one, or the input ends after the top-level value.
		if i, depth = closeCanonical(b, i, objects, depth); i < 0 {
			return false
		}
		if depth == 0 {
			return i == len(b)
		}
		if objects&(1<<(depth-1)) != 0 {
			if i = canonicalKey(b, i, &keys[depth-1]); i < 0 {
				return false
			}
		}
	}
}

// closeCanonical consumes the closing brackets after a value that ends before
// b[i], and then a comma, unless it closes the top-level value. objects and
// depth describe the open containers as in isCanonicalJSON. It returns the
// index after them and the depth left open, or -1 when b[i:] does not
// continue canonically.
func closeCanonical(b []byte, i int, objects uint64, depth int) (int, int) {
	for depth > 0 {
		if i >= len(b) {
			return -1, depth
		}
		switch c := b[i]; c {
		case ',':
			return i + 1, depth
		case '}', ']':
			if (objects&(1<<(depth-1)) != 0) != (c == '}') {
				return -1, depth
			}
			i++
			depth--
		default:
			return -1, depth
		}
	}
	return i, 0
}

// plainASCII tells the bytes that JCS writes literally inside a string and
// that need no further look: ASCII other than control characters, the
// quotation mark and the backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// canonicalKey consumes a canonical object key and its colon at b[i]: a
// quoted string of plainASCII bytes that sorts strictly after the object's
// previous key, which starts at b[*last] (none when *last is 0). It sets
// *last to the start of this key and returns the index after the colon, or
// -1.
func canonicalKey(b []byte, i int, last *int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	start := i + 1
	end := start
	for end < len(b) && plainASCII[b[end]] {
		end++
	}
	if end+1 >= len(b) || b[end] != '"' || b[end+1] != ':' {
		return -1
	}
	if *last > 0 && !keyLess(b, *last, start) {
		return -1
	}
	*last = start
	return end + 2
}

// keyLess reports whether the key at b[p:] sorts strictly before the key at
// b[q:]. Both are plainASCII bytes up to a quotation mark, which ends them.
func keyLess(b []byte, p, q int) bool {
	for ; ; p, q = p+1, q+1 {
		x, y := b[p], b[q]
		switch {
		case x == '"':
			return y != '"' // a proper prefix sorts first
		case y == '"':
			return false
		case x != y:
			return x < y
		}
	}
}

// canonicalString consumes a string at b[i] (the opening quote) that JCS
// writes back unchanged: valid UTF-8 without a backslash or a control
// character. It returns the index after the closing quote, or -1.
func canonicalString(b []byte, i int) int {
	for i++; i < len(b); {
		c := b[i]
		switch {
		case plainASCII[c]:
			i++
		case c == '"':
			return i + 1
		case c < utf8.RuneSelf:
			return -1 // a control character or a backslash
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return -1
			}
			i += size
		}
	}
	return -1
}

// canonicalInteger consumes an integer at b[i] in the form JCS writes it:
// -?(0|[1-9][0-9]*), at most maxCanonicalDigits digits, not -0. It returns
// the index after it, or -1. A fraction or exponent is left for the caller
// to reject.
func canonicalInteger(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
		if i < len(b) && b[i] == '0' {
			return -1
		}
	}
	start := i
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	switch n := i - start; {
	case n == 0 || n > maxCanonicalDigits:
		return -1
	case n > 1 && b[start] == '0':
		return -1
	}
	return i
}

// canonicalLiteral consumes word at b[i], returning the index after it, or -1.
func canonicalLiteral(b []byte, i int, word string) int {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return -1
	}
	return i + len(word)
}
