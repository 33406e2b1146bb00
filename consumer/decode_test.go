package consumer

import (
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func binaryMsg(hs ...string) kafka.Message {
	m := kafka.Message{Key: []byte("acct-1"), Value: []byte(`{"a":1}`)}
	for i := 0; i+1 < len(hs); i += 2 {
		m.Headers = append(m.Headers, kafka.Header{Key: hs[i], Value: []byte(hs[i+1])})
	}
	return m
}

func structuredMsg(value string, contentType string) kafka.Message {
	return kafka.Message{Key: []byte("acct-1"), Value: []byte(value),
		Headers: []kafka.Header{{Key: "content-type", Value: []byte(contentType)}}}
}

func TestDecode(t *testing.T) {
	when := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		msg       kafka.Message
		wantErr   bool
		id, typ   string
		data      string
		ctype     string
		time      time.Time
		extension [2]string
	}{
		{
			name: "binary",
			msg: binaryMsg("ce_specversion", "1.0", "ce_id", "e1", "ce_source", "s", "ce_type", "t",
				"ce_time", "2026-11-24T10:00:00Z", "ce_subject", "sub", "content-type", "application/json", "ce_traceparent", "00-x"),
			id: "e1", typ: "t", data: `{"a":1}`, ctype: "application/json", time: when,
			extension: [2]string{"traceparent", "00-x"},
		},
		{
			name: "structured",
			msg:  structuredMsg(`{"specversion":"1.0","id":"e2","source":"s","type":"t","time":"2026-11-24T10:00:00Z","data":{"b":2},"partnerid":"p7"}`, "application/cloudevents+json; charset=utf-8"),
			id:   "e2", typ: "t", data: `{"b":2}`, ctype: "application/json", time: when,
			extension: [2]string{"partnerid", "p7"},
		},
		{
			name: "structured base64",
			msg:  structuredMsg(`{"specversion":"1.0","id":"e3","source":"s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC"}`, "application/cloudevents+json"),
			id:   "e3", typ: "t", data: "\x00\x01\x02", ctype: "application/octet-stream",
		},
		{
			name: "structured text data",
			msg:  structuredMsg(`{"specversion":"1.0","id":"e4","source":"s","type":"t","datacontenttype":"text/plain","data":"hello"}`, "application/cloudevents+json"),
			id:   "e4", typ: "t", data: "hello", ctype: "text/plain",
		},
		{name: "no headers", msg: kafka.Message{Value: []byte("junk")}, wantErr: true},
		{name: "missing id", msg: binaryMsg("ce_specversion", "1.0", "ce_source", "s", "ce_type", "t"), wantErr: true},
		{name: "missing source", msg: binaryMsg("ce_specversion", "1.0", "ce_id", "e", "ce_type", "t"), wantErr: true},
		{name: "missing type", msg: binaryMsg("ce_specversion", "1.0", "ce_id", "e", "ce_source", "s"), wantErr: true},
		{name: "wrong specversion", msg: binaryMsg("ce_specversion", "0.3", "ce_id", "e", "ce_source", "s", "ce_type", "t"), wantErr: true},
		{name: "bad time", msg: binaryMsg("ce_specversion", "1.0", "ce_id", "e", "ce_source", "s", "ce_type", "t", "ce_time", "yesterday"), wantErr: true},
		{name: "structured not json", msg: structuredMsg(`{nope`, "application/cloudevents+json"), wantErr: true},
		{name: "structured missing id", msg: structuredMsg(`{"specversion":"1.0","source":"s","type":"t"}`, "application/cloudevents+json"), wantErr: true},
		{name: "structured both data forms", msg: structuredMsg(`{"specversion":"1.0","id":"e","source":"s","type":"t","data":1,"data_base64":"AA=="}`, "application/cloudevents+json"), wantErr: true},
		{name: "structured bad base64", msg: structuredMsg(`{"specversion":"1.0","id":"e","source":"s","type":"t","data_base64":"!!"}`, "application/cloudevents+json"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(&tt.msg)
			if tt.wantErr {
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("want a *DecodeError, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.ID != tt.id || ev.Type != tt.typ || ev.Source != "s" || string(ev.Data) != tt.data || ev.DataContentType != tt.ctype || ev.Key != "acct-1" {
				t.Fatalf("decoded %+v", ev)
			}
			if !ev.Time.Equal(tt.time) {
				t.Fatalf("time %v, want %v", ev.Time, tt.time)
			}
			if tt.extension[0] != "" && ev.Extensions[tt.extension[0]] != tt.extension[1] {
				t.Fatalf("extensions %v", ev.Extensions)
			}
		})
	}
}
