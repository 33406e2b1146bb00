package consumer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/handlers"
)

// The structured-mode decoder as it was before structured.go: two
// encoding/json unmarshals of the value, into a struct and into a map for
// the extensions. It is the reference of FuzzStructuredDiff; only the names
// are changed (a ref prefix).

// refStructured is the JSON form of a CloudEvent. Extensions are collected
// separately from the raw object.
type refStructured struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      string          `json:"data_base64"`
}

var refCoreAttributes = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "subject": true,
	"time": true, "datacontenttype": true, "data": true, "data_base64": true,
}

func refDecodeStructured(msg *kafka.Message) (handlers.Event, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(msg.Value, &raw); err != nil {
		return handlers.Event{Key: string(msg.Key)}, decodeErrorf("structured mode: value is not a JSON object: %v", err)
	}
	var s refStructured
	if err := json.Unmarshal(msg.Value, &s); err != nil {
		return handlers.Event{Key: string(msg.Key)}, decodeErrorf("structured mode: %v", err)
	}
	ev := handlers.Event{
		ID: s.ID, Source: s.Source, Type: s.Type, Subject: s.Subject,
		DataContentType: s.DataContentType, Key: string(msg.Key),
	}
	switch {
	case s.DataBase64 != "" && len(s.Data) > 0:
		return ev, decodeErrorf("structured mode: both data and data_base64 are set")
	case s.DataBase64 != "":
		b, err := base64.StdEncoding.DecodeString(s.DataBase64)
		if err != nil {
			return ev, decodeErrorf("structured mode: data_base64: %v", err)
		}
		ev.Data = b
	case len(s.Data) > 0:
		ev.Data = refStructuredData(s.Data, s.DataContentType)
		if ev.DataContentType == "" {
			ev.DataContentType = "application/json"
		}
	}
	for name, v := range raw {
		if refCoreAttributes[name] {
			continue
		}
		var str string
		if json.Unmarshal(v, &str) != nil {
			str = string(v) // numbers and booleans keep their JSON text
		}
		if ev.Extensions == nil {
			ev.Extensions = make(map[string]string)
		}
		ev.Extensions[name] = str
	}
	if err := check(&ev, s.SpecVersion, s.Time); err != nil {
		return ev, err
	}
	return ev, nil
}

// refStructuredData returns the bytes a handler sees for the data member: the
// JSON text itself for JSON content, the string's contents for a JSON string
// carrying another content type (text/plain, for example).
func refStructuredData(data json.RawMessage, contentType string) []byte {
	if contentType == "" || strings.Contains(contentType, "json") || data[0] != '"' {
		return bytes.Clone(data)
	}
	var s string
	if json.Unmarshal(data, &s) != nil {
		return bytes.Clone(data)
	}
	return []byte(s)
}
