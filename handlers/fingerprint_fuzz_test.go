package handlers

import (
	"bytes"
	"mime"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

// canonicalSeeds are inputs in JCS canonical form that isCanonicalJSON
// recognises.
var canonicalSeeds = []string{
	`{"account":"acct-00012","amount_cents":1250}`,
	`{"account":"acct-00012","amount_cents":-1250,"currency":"EUR","memo":"café ☕ 😀","tags":["a","b"],"void":false}`,
	`{}`, `[]`, `[[]]`, `[{}]`, `{"a":{}}`, `{"a":[]}`, `[[],{},[[]]]`,
	`0`, `7`, `-1`, `10`, `-10`, `123456789012345`, `-123456789012345`, `999999999999999`,
	`true`, `false`, `null`, `""`, `"a"`, `"café"`, `"😀"`, "\"\x7f\"", "\"\u2028\u2029\"", `"/"`, "\"\uFFFD\"", "\"\uFEFF\"",
	`{"":0}`, `{"":0,"a":1}`, `{"A":1,"a":2}`, `{"a":1,"a ":2,"b":3}`, `{"a":1,"aa":2,"ab":3,"b":4}`,
	`{" ":1,"!":2,"/":3,"0":4,"Z":5,"_":6,"z":7,"~":8}`, "{\"~\":1,\"\x7f\":2}",
	`{"b":{"a":1},"c":{"a":2}}`, `{"a":{"z":1},"b":2}`, `{"z":{"a":1,"b":2},"zz":[{"a":1},{"a":1}]}`,
	`[1,"x",true,false,null,{"a":[0]},[-1,[]]]`,
	`{"a":"'","b":"é"}`,
	strings.Repeat("[", maxCanonicalDepth) + strings.Repeat("]", maxCanonicalDepth),
	strings.Repeat(`{"a":`, maxCanonicalDepth) + "1" + strings.Repeat("}", maxCanonicalDepth),
}

// rejectedSeeds are inputs that isCanonicalJSON rejects: not canonical, not
// JSON, or canonical in a way it does not try to recognise.
var rejectedSeeds = []string{
	// Not JSON, or not one value.
	``, ` `, `x`, `{`, `[`, `"`, `"abc`, `{"a`, `{"a":1`, `[1`, `}`, `]`, `,`, `:`,
	`{}x`, `1x`, `truex`, `nul`, `nulll`, `tru`, `True`, `NaN`, `Infinity`, `-Infinity`,
	`{"a":1}}`, `[1]]`, `"a""b"`, `{}{}`, `[][]`, `""""`, `1 2`, `0 0`, `1,2`, `[1],`, `{},`,
	`[}`, `{]`, `[1}`, `{"a":1]`, `{"a"}`, `{"a":}`, `{,}`, `[,]`, `[,1]`, `[1,]`, `{"a":1,}`,
	`{"a":1,,"b":2}`, `[1,,2]`, `{"a"::1}`, `{"a":1:2}`, `{1:2}`, `{a:1}`, `{'a':1}`, `['a']`,
	// Whitespace.
	` {}`, `{} `, "{}\n", `{ }`, `[ ]`, `{"a": 1}`, `{"a" :1}`, `[1, 2]`, "{\n\"a\":1}", "[1\t]", "\r\n1",
	// Unsorted and duplicate keys, at every depth.
	`{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a":1,"b":2,"a":3}`, `{"aa":1,"a":2}`, `{"a":1,"A":2}`, `{"a ":1,"a":2}`,
	`{"a":{"b":1},"a":2}`, `{"b":{"a":1},"a":2}`, `{"a":{"b":1,"a":2}}`, `[{"b":1,"a":2}]`, `{"":1,"":2}`,
	// Escapes and control characters.
	`"\u00e9"`, `"\n"`, `"\/"`, `"\\"`, `"\""`, `"\t"`, `"\u001f"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udc00"`, `"\"`,
	`{"\u0061":1}`, `{"a\"":1}`, "\"\x00\"", "\"\t\"", "\"a\nb\"", "\"\x1f\"", "{\"\x01\":1}", "{\"a\tb\":1}",
	// Numbers JCS rewrites or rejects, and numbers it keeps but the fast
	// path leaves to it.
	`-0`, `[-0]`, `-`, `+1`, `01`, `00`, `-01`, `0x1`, `1.`, `.5`, `-.5`, `1.0`, `1.5`, `-0.0`, `0.1`,
	`1e2`, `1E2`, `1e+21`, `1e-7`, `1e400`, `-1e400`, `1e`, `1e+`,
	`1234567890123456`, `-1234567890123456`, `9007199254740992`, `9007199254740993`, `12345678901234567890`,
	`100000000000000000000`, `1000000000000000000000`, `{"a":1234567890123456}`, `[0001]`,
	// Non-ASCII outside strings, invalid UTF-8 and non-ASCII keys.
	"\uFEFF{}", "\uFEFF\"a\"", "\"\xff\"", "\"\xc3\"", "\"\xc3\"\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
	"\"\xe2\x82\"", "\"a\x80\"", "\xc3\xa9", `{"é":1}`, `{"é":1,"z":2}`, `{"z":1,"é":2}`, `{"😀":1,"ﬁ":2}`,
	// Too deep for the fast path.
	strings.Repeat("[", maxCanonicalDepth+1) + strings.Repeat("]", maxCanonicalDepth+1),
	strings.Repeat("[", 1000), strings.Repeat("[", 1000) + strings.Repeat("]", 1000), strings.Repeat(`{"a":`, 100),
}

// FuzzCanonicalFastPath tests isCanonicalJSON against jcs: whatever the
// recogniser accepts, jcs.Transform must accept and return unchanged.
func FuzzCanonicalFastPath(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	for _, s := range rejectedSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !isCanonicalJSON(b) {
			return
		}
		out, err := jcs.Transform(b)
		if err != nil {
			t.Fatalf("isCanonicalJSON(%q) = true, but jcs.Transform rejects it: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("isCanonicalJSON(%q) = true, but jcs.Transform makes it %q", b, out)
		}
	})
}

// FuzzFingerprintJSON tests that re-serialising a JSON payload in canonical
// form keeps its fingerprint, whichever path (fast, jcs) each side takes.
func FuzzFingerprintJSON(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	for _, s := range rejectedSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := jcs.Transform(b)
		if err != nil {
			return
		}
		ev := Event{Type: "t", Subject: "s", DataContentType: "application/json", Data: b}
		canon := ev
		canon.Data = c
		if a, b := Fingerprint(ev), Fingerprint(canon); a != b {
			t.Fatalf("Fingerprint(%q) = %s, but Fingerprint of its canonical form %q = %s", ev.Data, a, c, b)
		}
	})
}

// FuzzNormalizeMediaType tests the shortcut for plain media types against
// mime.ParseMediaType.
func FuzzNormalizeMediaType(f *testing.F) {
	for _, s := range []string{"application/json", "text/plain", "application/vnd.a-b.c+json", "Application/JSON",
		"application/json; charset=utf-8", "json", "/json", "a/", "a//b", "a/b/c", "a b/c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		if !isPlainMediaType(ct) {
			return
		}
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ct {
			t.Fatalf("isPlainMediaType(%q) = true, but mime.ParseMediaType gives %q, %v", ct, mt, err)
		}
	})
}
