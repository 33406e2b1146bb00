package consumer

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/handlers"
)

// validEvent is a structured event as producers write it.
const validEvent = `{"specversion":"1.0","id":"4f6c1d2e-8a9b-4c3d-9e0f-112233445566","source":"demo-shop","type":"payment.captured",` +
	`"time":"2026-11-24T10:00:00.123456789Z","datacontenttype":"application/json","data":{"account":"acct-1","amount_cents":1250}}`

// envelope is a valid event's attributes, for a member to be added to.
const envelope = `{"specversion":"1.0","id":"e1","source":"s","type":"t",`

// structuredSeeds are values that reach every decision of the decoder.
var structuredSeeds = []string{
	validEvent,
	`{"specversion":"1.0","id":"e2","source":"s","type":"t","time":"2026-11-24T10:00:00Z","data":{"b":2},"partnerid":"p7"}`,
	`{"specversion":"1.0","id":"e3","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC"}`,
	`{"specversion":"1.0","id":"e4","source":"s","type":"t","datacontenttype":"text/plain","data":"hello \u00e9 \ud83d\ude00"}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data":1,"data_base64":"AA=="}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data_base64":"!!"}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data_base64":"\n"}`,
	`{"specversion":"1.0","source":"s","type":"t"}`,
	`{"specversion":"0.3","id":"e","source":"s","type":"t"}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","time":"yesterday"}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data":null,"ext":null,"n":1.5e3,"b":true,"o":{"x": [1, 2]},"a":[]}`,
	`{"specversion":"1.0","id":"a","id":"b","id":null,"source":"s","type":"t","x":1,"x":"2"}`,
	`{"ID":"b","Id":"c","ſource":"s","TYPE":"t","SpecVersion":"1.0","Data":{"a":1},"DATA_BASE64":null}`,
	`{"specversion":"1.0","id":5,"source":"s","type":"t"}`,
	`{"specversion":"1.0","id":"e","source":"s","type":"t","subject":["x"]}`,
	`{"spec\u0076ersion":"1.0","\u0069d":"e\u0000\"\\\/\b\f\n\r\t","source":"s","type":"t","":"empty name"}`,
	"{\"specversion\":\"1.0\",\"id\":\"\xff\xfe\",\"source\":\"\xed\xa0\x80\",\"type\":\"t\",\"\xc3\":\"\\ud800\\u0041\"}",
	`{"specversion":"1.0","id":"e","source":"s","type":"t","x":"\udc00\ud800\udc00\ud800"}`,
	`null`, `[]`, `"x"`, `1`, `true`, ``, `   `, `{}`, `{} `, `{}{}`, `{} x`, `null null`, `{"a":}`, `{"a"`,
	` { "specversion" : "1.0" , "id" : "e" , "source" : "s" , "type" : "t" , "data" : [ 1 , { } ] } ` + "\n",
	`{"specversion":"1.0","id":"e","source":"s","type":"t","data":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`,
}

// memberSeeds are members added to a valid event's attributes.
var memberSeeds = []string{
	`"data":{"a":1}`, `"traceparent":"00-x"`, `"ID":null`, `"Time":"2026-11-24T10:00:00+01:00"`, `"x":{"y":[null]}`,
	`"datacontenttype":"text/plain","data":"\u0041"`, `"data_base64":"AAE="`, `"id":1`, `"\u0064ata":"x"`,
}

// FuzzStructuredDiff holds the structured-mode decoder to the one it
// replaced (structured_ref_test.go): on any value, on a valid event with any
// member added, and on a valid event with two members made from picks of
// names and kinds of values, both accept the same event or refuse it with
// the same kind of error, and return the same event, whole or partial.
func FuzzStructuredDiff(f *testing.F) {
	for i, s := range structuredSeeds {
		f.Add([]byte(s), []byte(memberSeeds[i%len(memberSeeds)]), uint32(i*7919), "x")
	}
	for i, m := range memberSeeds {
		f.Add([]byte(validEvent), []byte(m), uint32(i*104729), "2026-11-24T10:00:00Z")
	}
	f.Fuzz(func(t *testing.T, value, member []byte, pick uint32, text string) {
		sameAsReference(t, value)
		sameAsReference(t, append([]byte(envelope), append(member, '}')...))
		first, second := pickMember(pick, text), pickMember(pick>>16, text)
		sameAsReference(t, []byte(envelope+first+","+second+"}"))
	})
}

// pickNames are member names: every core attribute, in other cases too,
// and extensions.
var pickNames = []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "data_base64",
	"ID", "Data", "DATA_BASE64", "Time", "ſource", "\u0064ata", "ext", "", "\u00ff"}

// pickMember makes a member from pick, a choice of name and kind of value,
// and text, the value's text.
func pickMember(pick uint32, text string) string {
	name := pickNames[int(pick%uint32(len(pickNames)))]
	quoted, _ := json.Marshal(text)
	values := []string{string(quoted), `"` + text + `"`, text, "true", "false", "null", "12.5e-1", `{"a":` + string(quoted) + `}`,
		"[" + string(quoted) + "]", `"AAE="`, `"text/plain"`, `"1.0"`}
	return `"` + name + `":` + values[int(pick/uint32(len(pickNames))%uint32(len(values)))]
}

func sameAsReference(t *testing.T, value []byte) {
	t.Helper()
	msg := kafka.Message{Key: []byte("k"), Value: value}
	got, gotErr := decodeStructured(&msg)
	want, wantErr := refDecodeStructured(&msg)
	if refusesInvalidUTF8(gotErr) {
		// The one decision that departs from the reference: a core
		// attribute that is not valid UTF-8 is refused, where the
		// reference read it as U+FFFD (TestStructuredInvalidUTF8).
		return
	}
	if g, w := errorClass(gotErr), errorClass(wantErr); g != w {
		t.Fatalf("value %q:\n got error %v (%s)\nwant error %v (%s)", value, gotErr, g, wantErr, w)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("value %q:\n got %s\nwant %s", value, describe(got), describe(want))
	}
}

func refusesInvalidUTF8(err error) bool {
	var de *DecodeError
	return errors.As(err, &de) && strings.Contains(de.Reason, "is not valid UTF-8")
}

// TestStructuredInvalidUTF8: ids that differ only in bytes that are not
// UTF-8 (or in lone surrogates) would read as the same U+FFFD, one event:
// a core attribute that is not valid UTF-8 is refused; an extension or the
// data is read as before.
func TestStructuredInvalidUTF8(t *testing.T) {
	for _, value := range []string{
		"{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"t\"}",
		"{\"specversion\":\"1.0\",\"id\":\"\xfe\",\"source\":\"s\",\"type\":\"t\"}",
		`{"specversion":"1.0","id":"\ud800","source":"s","type":"t"}`,
		"{\"specversion\":\"1.0\",\"id\":\"e\",\"source\":\"s\xc3\",\"type\":\"t\"}",
	} {
		msg := kafka.Message{Value: []byte(value)}
		if _, err := decodeStructured(&msg); !refusesInvalidUTF8(err) {
			t.Errorf("value %q: %v, want refused as not valid UTF-8", value, err)
		}
	}
	for _, value := range []string{
		`{"specversion":"1.0","id":"\ud83d\ude00 \u00e9","source":"s","type":"t"}`,
		"{\"specversion\":\"1.0\",\"id\":\"e\",\"source\":\"s\",\"type\":\"t\",\"ext\":\"\xff\",\"datacontenttype\":\"text/plain\",\"data\":\"\xff\"}",
	} {
		msg := kafka.Message{Value: []byte(value)}
		if _, err := decodeStructured(&msg); err != nil {
			t.Errorf("value %q: %v, want accepted", value, err)
		}
	}
}

// errorClass is what a decoding error says, less the words of the JSON
// library: the two decoders use different ones.
func errorClass(err error) string {
	if err == nil {
		return "accepted"
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		return "not a *DecodeError: " + err.Error()
	}
	switch r := de.Reason; {
	case strings.HasPrefix(r, "structured mode: value is not a JSON object"):
		return "not a JSON object"
	case strings.HasPrefix(r, "structured mode: both data"), strings.HasPrefix(r, "structured mode: data_base64"):
		return r
	case strings.HasPrefix(r, "structured mode: "):
		return "an attribute is not a string"
	default:
		return r // check's reasons: specversion, a missing attribute, time
	}
}

func describe(ev handlers.Event) string {
	return fmt.Sprintf("id=%q source=%q type=%q subject=%q time=%v datacontenttype=%q key=%q data=%q (nil: %v) extensions=%q (nil: %v)",
		ev.ID, ev.Source, ev.Type, ev.Subject, ev.Time, ev.DataContentType, ev.Key, ev.Data, ev.Data == nil, ev.Extensions, ev.Extensions == nil)
}

// TestStructuredDiffDepth: at encoding/json's limit of nesting (10,000,
// the event's own object included), and past it, the decoders agree. fleet
// refuses such values before (MaxJSONDepth), unless that limit is off.
func TestStructuredDiffDepth(t *testing.T) {
	for _, depth := range []int{9999, 10000, 10001} {
		inner := depth - 1 // the event's object is one
		value := envelope + `"data":` + strings.Repeat("[", inner) + strings.Repeat("]", inner) + "}"
		sameAsReference(t, []byte(value))
		msg := kafka.Message{Value: []byte(value)}
		_, err := decodeStructured(&msg)
		if accepted := err == nil; accepted != (depth <= 10000) {
			t.Errorf("depth %d: error %v", depth, err)
		}
	}
}
