package handlers

import (
	"encoding/binary"
	"fmt"
	"mime"
	"regexp"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/gowebpki/jcs"
)

// jsonEvent is a ledger event with the given content type and data.
func jsonEvent(ct, data string) Event {
	return Event{ID: "1", Source: "ledger", Type: "payment.captured", Subject: "acct-00012",
		DataContentType: ct, Data: []byte(data)}
}

func TestFingerprintFormat(t *testing.T) {
	fp := Fingerprint(jsonEvent("application/json", `{"a":1}`))
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(fp) {
		t.Fatalf("Fingerprint = %q, want 16 lowercase hex characters", fp)
	}
	if again := Fingerprint(jsonEvent("application/json", `{"a":1}`)); again != fp {
		t.Fatalf("Fingerprint is not deterministic: %q then %q", fp, again)
	}
}

func TestFingerprintSame(t *testing.T) {
	const canonical = `{"account":"acct-00012","amount_cents":1250,"memo":"café"}`
	base := jsonEvent("application/json", canonical)
	for _, tc := range []struct {
		name string
		ev   Event
	}{
		{"identical", jsonEvent("application/json", canonical)},
		{"key order", jsonEvent("application/json", `{"memo":"café","amount_cents":1250,"account":"acct-00012"}`)},
		{"whitespace", jsonEvent("application/json", "{\n  \"account\": \"acct-00012\",\n\t\"amount_cents\": 1250,\r\n  \"memo\": \"café\"\n}\n")},
		{"1250.0 for 1250", jsonEvent("application/json", `{"account":"acct-00012","amount_cents":1250.0,"memo":"café"}`)},
		{"exponent", jsonEvent("application/json", `{"account":"acct-00012","amount_cents":1.25e3,"memo":"café"}`)},
		{"escaped unicode", jsonEvent("application/json", `{"account":"acct-00012","amount_cents":1250,"memo":"caf\u00e9"}`)},
		{"escaped ascii", jsonEvent("application/json", `{"\u0061ccount":"acct\u002d00012","amount_cents":1250,"memo":"café"}`)},
		{"charset parameter", jsonEvent("application/json; charset=utf-8", canonical)},
		{"media type case", jsonEvent("Application/JSON", canonical)},
		{"media type spaces", jsonEvent(" application/json ;charset=UTF-8", canonical)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := Fingerprint(tc.ev), Fingerprint(base); got != want {
				t.Errorf("Fingerprint(%q, %q) = %s, want %s as for %q", tc.ev.DataContentType, tc.ev.Data, got, want, canonical)
			}
		})
	}
}

func TestFingerprintSameOtherJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b Event
	}{
		{"+json suffix", jsonEvent("application/vnd.ledger+json", `{"b":1,"a":2}`), jsonEvent("application/vnd.ledger+json; v=2", `{"a":2,"b":1}`)},
		{"text/json", jsonEvent("text/json", `[1, 2]`), jsonEvent("TEXT/JSON", `[1,2]`)},
		{"top-level scalar", jsonEvent("application/json", ` "x" `), jsonEvent("application/json", `"x"`)},
		{"-0 is 0", jsonEvent("application/json", `[-0]`), jsonEvent("application/json", `[0]`)},
		{"integers round to doubles, as in JCS", jsonEvent("application/json", `9007199254740993`), jsonEvent("application/json", `9007199254740992`)},
		{"invalid JSON, other parameters", jsonEvent("application/json", `{"a":`), jsonEvent("application/json; charset=utf-8", `{"a":`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a, b := Fingerprint(tc.a), Fingerprint(tc.b); a != b {
				t.Errorf("Fingerprint(%q, %q) = %s, Fingerprint(%q, %q) = %s, want equal",
					tc.a.DataContentType, tc.a.Data, a, tc.b.DataContentType, tc.b.Data, b)
			}
		})
	}
}

func TestFingerprintDifferent(t *testing.T) {
	base := jsonEvent("application/json", `{"account":"acct-00012","amount_cents":1250}`)
	with := func(f func(*Event)) Event {
		ev := base
		f(&ev)
		return ev
	}
	for _, tc := range []struct {
		name string
		a, b Event
	}{
		{"other amount", base, jsonEvent("application/json", `{"account":"acct-00012","amount_cents":1251}`)},
		{"number vs string", base, jsonEvent("application/json", `{"account":"acct-00012","amount_cents":"1250"}`)},
		{"extra member", base, jsonEvent("application/json", `{"account":"acct-00012","amount_cents":1250,"x":null}`)},
		{"array order", jsonEvent("application/json", `[1,2]`), jsonEvent("application/json", `[2,1]`)},
		{"other type", base, with(func(ev *Event) { ev.Type = "payment.refunded" })},
		{"other subject", base, with(func(ev *Event) { ev.Subject = "acct-00013" })},
		{"type and subject boundary", with(func(ev *Event) { ev.Type, ev.Subject = "ab", "c" }), with(func(ev *Event) { ev.Type, ev.Subject = "a", "bc" })},
		{"text/plain vs application/json", jsonEvent("text/plain", `{"a":1}`), jsonEvent("application/json", `{"a":1}`)},
		{"octet-stream vs application/json", jsonEvent("application/octet-stream", `{"a":1}`), jsonEvent("application/json", `{"a":1}`)},
		{"no content type vs application/json", jsonEvent("", `{"a":1}`), jsonEvent("application/json", `{"a":1}`)},
		{"bytes keep whitespace", jsonEvent("text/plain", `{"a":1}`), jsonEvent("text/plain", `{"a": 1}`)},
		{"non-JSON charset", jsonEvent("text/plain; charset=latin1", "caf\xe9"), jsonEvent("text/plain; charset=utf-8", "caf\xe9")},
		{"non-JSON case", jsonEvent("text/plain", "x"), jsonEvent("Text/Plain", "x")},
		{"invalid JSON bytes", jsonEvent("application/json", `{"a":1`), jsonEvent("application/json", `{"a":1 `)},
		{"empty vs null", jsonEvent("application/json", ``), jsonEvent("application/json", `null`)},
		{"empty vs empty string", jsonEvent("application/json", ``), jsonEvent("application/json", `""`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a, b := Fingerprint(tc.a), Fingerprint(tc.b); a == b {
				t.Errorf("Fingerprint(%q, %q) = Fingerprint(%q, %q) = %s, want different",
					tc.a.DataContentType, tc.a.Data, tc.b.DataContentType, tc.b.Data, a)
			}
		})
	}
}

// TestFingerprintParts pins the digest layout: a fingerprint equals one of
// the parts as the doc comment of Fingerprint states them.
func TestFingerprintParts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ev        Event
		mediaType string
		tag       byte
		data      string
	}{
		{"canonical JSON", jsonEvent("application/json", `{"a":1}`), "application/json", 'j', `{"a":1}`},
		{"transformed JSON", jsonEvent("Application/Json; charset=utf-8", `{ "b":2.0, "a":"\u00e9" }`), "application/json", 'j', `{"a":"é","b":2}`},
		{"invalid JSON", jsonEvent("application/json; charset=utf-8", `{"a":`), "application/json", 'b', `{"a":`},
		{"duplicate key", jsonEvent("application/json", `{"a":1,"a":1}`), "application/json", 'b', `{"a":1,"a":1}`},
		{"empty data", jsonEvent("application/json", ""), "application/json", 'b', ""},
		{"not JSON", jsonEvent("Text/Plain; charset=utf-8", `{"a":1}`), "Text/Plain; charset=utf-8", 'b', `{"a":1}`},
		{"no content type", jsonEvent("", `{ "a":1}`), "", 'b', `{ "a":1}`},
		{"unparsable content type", jsonEvent("application/json;;", `{ "a":1}`), "application/json;;", 'b', `{ "a":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := layoutFingerprint(tc.ev.Type, tc.ev.Subject, tc.mediaType, tc.tag, tc.data)
			if got := Fingerprint(tc.ev); got != want {
				t.Errorf("Fingerprint(%q, %q) = %s, want %s (media type %q, tag %c, data %q)",
					tc.ev.DataContentType, tc.ev.Data, got, want, tc.mediaType, tc.tag, tc.data)
			}
		})
	}
}

// layoutFingerprint computes a fingerprint from its parts, independently of
// Fingerprint: length-prefixed type, subject and media type, then the tag and
// the length-prefixed data, hashed with xxhash64 into 16 hex characters.
func layoutFingerprint(typ, subject, mediaType string, tag byte, data string) string {
	var buf []byte
	for _, s := range []string{typ, subject, mediaType} {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	buf = append(buf, tag)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(data)))
	buf = append(buf, data...)
	return fmt.Sprintf("%016x", xxhash.Sum64(buf))
}

func TestNormalizeMediaType(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		json     bool
	}{
		{"application/json", "application/json", true},
		{"application/json; charset=utf-8", "application/json", true},
		{"APPLICATION/JSON", "application/json", true},
		{"text/json", "text/json", true},
		{"application/vnd.fleet.ledger+json", "application/vnd.fleet.ledger+json", true},
		{"application/cloudevents+json", "application/cloudevents+json", true},
		{"application/problem+JSON; x=y", "application/problem+json", true},
		{"application/jsonx", "application/jsonx", false},
		{"application/json-seq", "application/json-seq", false},
		{"text/plain; charset=utf-8", "text/plain; charset=utf-8", false},
		{"Text/Plain", "Text/Plain", false},
		{"", "", false},
		{"json", "json", false},
		{"application/json; charset", "application/json; charset", false}, // ParseMediaType fails
		{"application/", "application/", false},
	} {
		got, json := normalizeMediaType(tc.in)
		if got != tc.want || json != tc.json {
			t.Errorf("normalizeMediaType(%q) = %q, %v, want %q, %v", tc.in, got, json, tc.want, tc.json)
		}
	}
}

// TestIsPlainMediaType checks the shortcut against mime.ParseMediaType: a
// plain media type parses to itself.
func TestIsPlainMediaType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"application/json", true},
		{"text/plain", true},
		{"application/vnd.fleet-ledger.v1+json", true},
		{"a/b", true},
		{"", false},
		{"json", false},
		{"/json", false},
		{"application/", false},
		{"application/json/x", false},
		{"Application/json", false},
		{"application/json ", false},
		{"application/json;charset=utf-8", false},
	} {
		if got := isPlainMediaType(tc.in); got != tc.want {
			t.Errorf("isPlainMediaType(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if !tc.want {
			continue
		}
		if mt, _, err := mime.ParseMediaType(tc.in); err != nil || mt != tc.in {
			t.Errorf("mime.ParseMediaType(%q) = %q, %v; isPlainMediaType must imply it parses to itself", tc.in, mt, err)
		}
	}
}

func TestIsCanonicalJSON(t *testing.T) {
	for _, in := range canonicalSeeds {
		if !isCanonicalJSON([]byte(in)) {
			t.Errorf("isCanonicalJSON(%q) = false, want true", in)
		}
		if out, err := jcs.Transform([]byte(in)); err != nil || string(out) != in {
			t.Errorf("jcs.Transform(%q) = %q, %v; the test case is not canonical", in, out, err)
		}
	}
	for _, in := range rejectedSeeds {
		if isCanonicalJSON([]byte(in)) {
			t.Errorf("isCanonicalJSON(%q) = true, want false", in)
		}
	}
}

func TestIsCanonicalJSONDepth(t *testing.T) {
	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	if in := nested(maxCanonicalDepth); !isCanonicalJSON([]byte(in)) {
		t.Errorf("isCanonicalJSON of %d nested arrays = false, want true", maxCanonicalDepth)
	}
	if in := nested(maxCanonicalDepth + 1); isCanonicalJSON([]byte(in)) {
		t.Errorf("isCanonicalJSON of %d nested arrays = true, want false", maxCanonicalDepth+1)
	}
	// Deep input still fingerprints as JSON, through jcs.
	deep := nested(1000)
	if a, b := Fingerprint(jsonEvent("application/json", deep)), Fingerprint(jsonEvent("application/json", strings.ReplaceAll(deep, "]", " ]"))); a != b {
		t.Errorf("deeply nested arrays: fingerprints %s and %s differ with whitespace", a, b)
	}
}

func TestFingerprintAllocs(t *testing.T) {
	ev := jsonEvent("application/json", `{"account":"acct-00012","amount_cents":1250}`)
	if n := testing.AllocsPerRun(100, func() { _ = Fingerprint(ev) }); n > 1 {
		t.Errorf("Fingerprint of canonical JSON allocates %v times, want at most 1 (the result)", n)
	}
	b := []byte(`{"a":[1,"é",{"b":true,"c":null}],"d":-12}`)
	if n := testing.AllocsPerRun(100, func() { _ = isCanonicalJSON(b) }); n != 0 {
		t.Errorf("isCanonicalJSON allocates %v times, want 0", n)
	}
}

func BenchmarkFingerprint(b *testing.B) {
	for _, bc := range []struct {
		name, data string
	}{
		{"canonical", `{"account":"acct-00012","amount_cents":1250}`},
		{"noncanonical", `{"amount_cents": 1250, "account": "acct-00012"}`},
	} {
		ev := jsonEvent("application/json", bc.data)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Fingerprint(ev)
			}
		})
	}
	b.Run("jcs.Transform", func(b *testing.B) {
		data := []byte(`{"account":"acct-00012","amount_cents":1250}`)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jcs.Transform(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
