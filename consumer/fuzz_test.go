package consumer

import (
	"encoding/json"
	"testing"

	"github.com/segmentio/kafka-go"
)

// FuzzDecode feeds arbitrary values and headers to the CloudEvents
// decoder, in both modes: it must never panic, and what it accepts must
// have an id, a source and a type.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"account":"a","amount_cents":1}`), "1.0", "e1", "s", "t", "application/json", "")
	f.Add([]byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t","data":{"a":1}}`), "", "", "", "", "application/cloudevents+json", "")
	f.Add([]byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t","data_base64":"AAE="}`), "", "", "", "", "application/cloudevents+json; charset=utf-8", "")
	f.Add([]byte("\x00\x01not json"), "1.0", "", "s", "t", "", "2026-11-24T10:00:00Z")
	f.Add([]byte(`{"specversion":"1.0","id":"","source":"s","type":"t"}`), "", "", "", "", "application/cloudevents+json", "not a time")
	f.Fuzz(func(t *testing.T, value []byte, spec, id, source, typ, contentType, when string) {
		m := kafka.Message{Key: []byte("k"), Value: value}
		for _, h := range [][2]string{{HeaderSpecVersion, spec}, {HeaderID, id}, {HeaderSource, source}, {HeaderType, typ},
			{HeaderContentType, contentType}, {HeaderTime, when}} {
			if h[1] != "" {
				m.Headers = append(m.Headers, kafka.Header{Key: h[0], Value: []byte(h[1])})
			}
		}
		ev, err := Decode(&m)
		if err == nil && (ev.ID == "" || ev.Source == "" || ev.Type == "") {
			t.Fatalf("accepted an event without id, source or type: %+v", ev)
		}
	})
}

// FuzzJSONDepth checks the depth scanner against encoding/json on valid
// JSON, and that it never panics on anything else.
func FuzzJSONDepth(f *testing.F) {
	for _, s := range []string{`{}`, `[[[]]]`, `{"a":"[[[","b":[{"c":{}}]}`, `"\"[{"`, `[1,[2,[3]]]`, `{`, `]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := jsonDepth(b, 1<<30)
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		if want := depthOf(v); got != want {
			t.Fatalf("jsonDepth(%q) = %d, encoding/json says %d", b, got, want)
		}
	})
}

func depthOf(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
		return d + 1
	}
	return 0
}
