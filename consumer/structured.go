package consumer

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/fleetworks/fleet/internal/jsonkind"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/handlers"
)

// The core attributes of structured mode; data last.
const (
	attrSpecVersion = iota
	attrID
	attrSource
	attrType
	attrSubject
	attrTime
	attrDataContentType
	attrDataBase64
	attrData
	numAttrs
	attrNone = -1
)

var attrNames = [numAttrs]string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data_base64", "data"}

// structuredOptions read JSON as encoding/json did: a name given twice is
// no error (the last value counts), and neither is invalid UTF-8.
var structuredOptions = json.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// structuredReader is what reading a value needs, reused across messages: a
// decoder, the buffer it reads (a Decoder reads a bytes.Buffer in place,
// without copying it), and room for the attributes' text.
type structuredReader struct {
	buf  bytes.Buffer
	dec  jsontext.Decoder
	text []byte
}

var structuredReaders = sync.Pool{New: func() any { return new(structuredReader) }}

// maxPooledText is the most room for text that a reader keeps in the pool:
// an event with huge attributes should not pin its memory.
const maxPooledText = 4 << 10

// release lets go of the value that r read, and puts r back in the pool.
func (r *structuredReader) release() {
	r.buf = bytes.Buffer{}
	r.dec.Reset(&r.buf)
	if cap(r.text) > maxPooledText {
		r.text = nil
	}
	structuredReaders.Put(r)
}

// structuredValue is what a structured-mode value holds: the core
// attributes, the JSON text of data, and the extensions.
type structuredValue struct {
	// text holds the contents of the core attributes' strings one after
	// the other, and spans says where each is: they become strings in one
	// allocation.
	text  []byte
	spans [attrData]struct{ from, to int }
	data  []byte
	ext   map[string]string
	// typeErr is the first core attribute that is not a string (nor null):
	// it refuses the event once the whole value is known to be JSON.
	typeErr error
}

// decodeStructured reads a structured-mode event in one pass over the
// value with a jsontext.Decoder, which validates the JSON as it goes and
// builds nothing: the attributes are copied out as they come, and a map is
// made only for an event with extension attributes.
//
// It decides as encoding/json (v1) did when it unmarshalled the value twice,
// once into a struct and once into a map for the extensions, and the
// differential fuzz test (FuzzStructuredDiff) holds it to that:
//
//   - the value must be one JSON object, with nothing but whitespace after
//     it, nested at most 10,000 deep (fleet's own limit, MaxJSONDepth, is
//     checked before, in checkLimits); a top-level null is an event without
//     attributes, refused for its specversion;
//   - a name given twice counts with its last value;
//   - a name matches a core attribute without regard to case, as
//     strings.EqualFold compares (encoding/json matched struct fields so):
//     "ID" sets the id. Only the exact lower-case name is the attribute
//     alone: "ID" is an extension attribute too;
//   - a core attribute must be a string or null (null leaves it as it
//     was), except data, which may be any JSON value (null is the data
//     "null");
//   - an extension's value is its string's contents, "" for null, and the
//     JSON text of anything else (a number, a boolean, an object, an array);
//   - invalid UTF-8 in a string, and an escaped lone surrogate, read as
//     U+FFFD, except in a core attribute (but data), which is refused:
//     read so, ids "\xff" and "\xfe" would name one event (the decoder
//     before read them as U+FFFD too).
func decodeStructured(msg *kafka.Message) (handlers.Event, error) {
	r := structuredReaders.Get().(*structuredReader)
	defer r.release()
	s := structuredValue{text: r.text[:0]}
	err := s.read(r, msg.Value)
	r.text = s.text
	if err != nil {
		return handlers.Event{Key: string(msg.Key)}, err
	}
	attrs := s.attributes()
	ev := handlers.Event{
		ID: attrs[attrID], Source: attrs[attrSource], Type: attrs[attrType], Subject: attrs[attrSubject],
		DataContentType: attrs[attrDataContentType], Key: string(msg.Key),
	}
	switch b64 := attrs[attrDataBase64]; {
	case b64 != "" && len(s.data) > 0:
		return ev, decodeErrorf("structured mode: both data and data_base64 are set")
	case b64 != "":
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return ev, decodeErrorf("structured mode: data_base64: %v", err)
		}
		ev.Data = b
	case len(s.data) > 0:
		ev.Data = structuredData(s.data, attrs[attrDataContentType])
		if ev.DataContentType == "" {
			ev.DataContentType = "application/json"
		}
	}
	ev.Extensions = s.ext
	if err := check(&ev, attrs[attrSpecVersion], attrs[attrTime]); err != nil {
		return ev, err
	}
	return ev, nil
}

// read reads value, a whole structured-mode event, into s with r.
func (s *structuredValue) read(r *structuredReader, value []byte) error {
	r.buf = *bytes.NewBuffer(value)
	r.dec.Reset(&r.buf, structuredOptions)
	dec := &r.dec
	tok, err := dec.ReadToken()
	if err != nil {
		return notAnObject(err)
	}
	switch k := tok.Kind(); k {
	case '{':
		if err := s.members(dec); err != nil {
			return notAnObject(err)
		}
	case 'n':
		// An event without attributes, as encoding/json left it.
	default:
		return decodeErrorf("structured mode: value is not a JSON object: it is %s", jsonkind.Name(k))
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errors.New("another JSON value after the object")
		}
		return notAnObject(err)
	}
	return s.typeErr
}

func notAnObject(err error) error {
	return decodeErrorf("structured mode: value is not a JSON object: %v", err)
}

// members reads the members of the object whose '{' dec has just read, and
// its '}'. It returns dec's error, if any: the value is not JSON.
func (s *structuredValue) members(dec *jsontext.Decoder) error {
	for dec.PeekKind() != '}' {
		quoted, err := dec.ReadValue()
		if err != nil {
			return err
		}
		// The name's bytes are dec's until the next read: what is kept of
		// it (an extension's name) is a copy.
		attr, ext, isExt := attribute(quoted)
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if attr != attrNone {
			s.setAttribute(attr, v)
		}
		if isExt {
			s.setExtension(ext, v)
		}
	}
	_, err := dec.ReadToken()
	return err
}

// attribute matches a member's name, as a quoted JSON string, with the core
// attributes. It returns the attribute (or attrNone) and, when the member is
// also, or only, an extension attribute (any name but the exact name of a
// core attribute), its name.
func attribute(quoted jsontext.Value) (attr int, ext string, isExt bool) {
	// Names as producers write them need no unquoting, and no copy.
	if raw := quoted[1 : len(quoted)-1]; bytes.IndexByte(raw, '\\') < 0 {
		for i, a := range attrNames {
			if string(raw) == a {
				return i, "", false
			}
		}
	}
	name := unquote(quoted)
	for i, a := range attrNames {
		if name == a {
			return i, "", false
		}
	}
	for i, a := range attrNames {
		if strings.EqualFold(name, a) {
			return i, name, true
		}
	}
	return attrNone, name, true
}

func (s *structuredValue) setAttribute(attr int, v jsontext.Value) {
	switch k := v.Kind(); {
	case attr == attrData:
		s.data = bytes.Clone(v)
	case k == '"':
		if !validString(v) && s.typeErr == nil {
			// Read as U+FFFD, two ids would name one event.
			s.typeErr = decodeErrorf("structured mode: attribute %s is not valid UTF-8 (invalid bytes or an escaped lone surrogate; JSON text must be UTF-8)", attrNames[attr])
		}
		from := len(s.text)
		s.text = appendUnquoted(s.text, v)
		s.spans[attr].from, s.spans[attr].to = from, len(s.text)
	case k == 'n':
		// null leaves the attribute as it was.
	case s.typeErr == nil:
		s.typeErr = decodeErrorf("structured mode: attribute %s is %s, not a string", attrNames[attr], jsonkind.Name(k))
	}
}

// attributes returns the core attributes but data, as strings.
func (s *structuredValue) attributes() [attrData]string {
	text := string(s.text)
	var attrs [attrData]string
	for i, sp := range s.spans {
		attrs[i] = text[sp.from:sp.to]
	}
	return attrs
}

func (s *structuredValue) setExtension(name string, v jsontext.Value) {
	if s.ext == nil {
		s.ext = make(map[string]string)
	}
	switch v.Kind() {
	case '"':
		s.ext[name] = unquote(v)
	case 'n':
		s.ext[name] = ""
	default:
		s.ext[name] = string(v)
	}
}

// structuredData returns the bytes a handler sees for the data member: the
// JSON text itself for JSON content, the string's contents for a JSON string
// carrying another content type (text/plain, for example).
func structuredData(data []byte, contentType string) []byte {
	if contentType == "" || strings.Contains(contentType, "json") || data[0] != '"' {
		return data
	}
	return []byte(unquote(data))
}

// unquote returns the contents of a JSON string that a Decoder has read.
func unquote(quoted []byte) string {
	if b := quoted[1 : len(quoted)-1]; bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) {
		return string(b)
	}
	return string(appendUnquoted(nil, quoted))
}

// appendUnquoted appends the contents of a JSON string that a Decoder has
// read, so valid but for invalid UTF-8 and lone surrogates, which read as
// U+FFFD: the error AppendUnquote reports for them is no error here.
func appendUnquoted(dst, quoted []byte) []byte {
	if b := quoted[1 : len(quoted)-1]; bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) {
		return append(dst, b...)
	}
	dst, _ = jsontext.AppendUnquote(dst, quoted)
	return dst
}

// validString reports whether a JSON string that a Decoder has read holds
// valid UTF-8 and no escaped lone surrogate.
func validString(quoted []byte) bool {
	if b := quoted[1 : len(quoted)-1]; bytes.IndexByte(b, '\\') < 0 {
		return utf8.Valid(b)
	}
	_, err := jsontext.AppendUnquote(nil, quoted)
	return err == nil
}
