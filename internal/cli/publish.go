package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
)

// publishCmd is `fleet publish`: CloudEvents onto a topic, so that
// upstream teams can try their contract. Flag names are a contract.
type publishCmd struct {
	Brokers       []string `env:"FLEET_BROKERS" sep:"," help:"Kafka bootstrap brokers, host:port, comma-separated."`
	Topic         string   `required:"" help:"Topic to publish to."`
	Type          string   `help:"Event type (ce_type), for example payment.captured."`
	Source        string   `help:"Event source (ce_source), for example payments-api."`
	ID            string   `name:"id" help:"Event id (ce_id); generated (a UUID) and printed when missing."`
	Key           string   `help:"Kafka message key: the aggregate (account, order)."`
	Subject       string   `help:"Event subject (ce_subject)."`
	Data          string   `help:"Event data, JSON. Without it, events are read as JSON lines from --file or standard input."`
	ContentType   string   `default:"application/json" help:"Content type of the data."`
	Structured    bool     `help:"Structured mode: the value is the whole event as JSON (content-type application/cloudevents+json). Default: binary mode."`
	File          string   `short:"f" help:"Read events as JSON lines from this file (- for standard input)."`
	Tracing       bool     `env:"FLEET_TRACING" help:"Start a trace per event, its producer span exported as fleet run --tracing exports (the OTEL_* variables), and publish the event in it (ce_traceparent; in structured mode the traceparent attribute); the trace id is printed."`
	kafkaSecurity `embed:""`
}

// publishLine is one event of the JSON-lines input; missing fields take the
// flags' values.
type publishLine struct {
	ID      string          `json:"id"`
	Source  string          `json:"source"`
	Type    string          `json:"type"`
	Key     string          `json:"key"`
	Subject string          `json:"subject"`
	Time    string          `json:"time"`
	Data    json.RawMessage `json:"data"`
}

func (c *publishCmd) Run(app *App, stdout io.Writer) error {
	c.Brokers = trimAll(c.Brokers)
	if len(c.Brokers) == 0 {
		return configError{errors.New("brokers: at least one is required (--brokers or FLEET_BROKERS)")}
	}
	dialer, err := c.kafkaDialer()
	if err != nil {
		return configError{err}
	}
	var lines []publishLine
	switch {
	case c.Data != "" && c.File != "":
		return configError{errors.New("give --data for one event or --file for many, not both")}
	case c.Data != "":
		lines = []publishLine{{ID: c.ID, Key: c.Key, Subject: c.Subject, Data: json.RawMessage(c.Data)}}
	default:
		in := io.Reader(os.Stdin)
		if c.File != "" && c.File != "-" {
			f, err := os.Open(c.File)
			if err != nil {
				return configError{err}
			}
			defer f.Close()
			in = f
		}
		if lines, err = readLines(in); err != nil {
			return configError{err}
		}
		if len(lines) == 0 {
			return configError{errors.New("no events: give --data, or JSON lines on standard input or in --file")}
		}
	}
	ctx, stop := signalContext()
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tp, stopTracing, err := startTracing(ctx, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), c.Tracing, app.version())
	if err != nil {
		return err
	}
	defer func() { _ = stopTracing() }()
	msgs := make([]kafka.Message, 0, len(lines))
	var printed []string
	var spans sendSpans
	for i, l := range lines {
		m, ev, err := c.message(l)
		if err == nil && tp != nil {
			err = spans.start(ctx, tp.Tracer("github.com/fleetworks/fleet/publish"), c.Topic, &m, ev, c.Structured)
		}
		if err != nil {
			if len(lines) > 1 {
				err = fmt.Errorf("event %d: %w", i+1, err)
			}
			return configError{err}
		}
		msgs = append(msgs, m)
		printed = append(printed, ev.line())
	}
	w := &kafka.Writer{Addr: kafka.TCP(c.Brokers...), Topic: c.Topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: consumer.Transport(dialer), AllowAutoTopicCreation: true}
	defer w.Close()
	err = w.WriteMessages(ctx, msgs...)
	spans.end(err)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", c.Topic, err)
	}
	for i, line := range printed {
		if tp != nil {
			line += " trace=" + spans.traceID(i)
		}
		if _, err := fmt.Fprintf(stdout, "%s to %s\n", line, c.Topic); err != nil {
			return err
		}
	}
	return nil
}

// publishedEvent is what `fleet publish` says of an event it published.
type publishedEvent struct {
	id, typ, source, key string
}

func (e publishedEvent) line() string {
	return fmt.Sprintf("published id=%s type=%s source=%s key=%s", e.id, e.typ, e.source, dash(e.key))
}

// readLines reads JSON lines, skipping blank ones.
func readLines(r io.Reader) ([]publishLine, error) {
	var out []publishLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var l publishLine
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("line %d: %w (fields: id, source, type, key, subject, time, data)", n, err)
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// message builds the Kafka message of one event, and says what it is.
func (c *publishCmd) message(l publishLine) (kafka.Message, publishedEvent, error) {
	pick := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	id, source, typ := pick(l.ID, ""), pick(l.Source, c.Source), pick(l.Type, c.Type)
	key, subject := pick(l.Key, ""), pick(l.Subject, "")
	if id == "" {
		id = uuid.NewString()
	}
	switch {
	case source == "":
		return kafka.Message{}, publishedEvent{}, errors.New("source is required (--source, or \"source\" in the line)")
	case typ == "":
		return kafka.Message{}, publishedEvent{}, errors.New("type is required (--type, or \"type\" in the line)")
	case len(l.Data) == 0:
		return kafka.Message{}, publishedEvent{}, errors.New("data is required (--data, or \"data\" in the line)")
	case strings.Contains(c.ContentType, "json") && !json.Valid(l.Data):
		return kafka.Message{}, publishedEvent{}, fmt.Errorf("data is not valid JSON: %.60s", l.Data)
	}
	when := l.Time
	if when == "" {
		when = time.Now().UTC().Format(time.RFC3339Nano)
	} else if _, err := time.Parse(time.RFC3339Nano, when); err != nil {
		return kafka.Message{}, publishedEvent{}, fmt.Errorf("time %q is not RFC 3339", when)
	}
	m := kafka.Message{Key: []byte(key)}
	if key == "" {
		m.Key = nil
	}
	if c.Structured {
		ev := map[string]any{"specversion": "1.0", "id": id, "source": source, "type": typ, "time": when,
			"datacontenttype": c.ContentType, "data": l.Data}
		if !strings.Contains(c.ContentType, "json") {
			ev["data"] = string(l.Data)
		}
		if subject != "" {
			ev["subject"] = subject
		}
		v, err := json.Marshal(ev)
		if err != nil {
			return kafka.Message{}, publishedEvent{}, err
		}
		m.Value = v
		m.Headers = []kafka.Header{{Key: consumer.HeaderContentType, Value: []byte(consumer.StructuredContentType)}}
	} else {
		m.Value = l.Data
		add := func(k, v string) { m.Headers = append(m.Headers, kafka.Header{Key: k, Value: []byte(v)}) }
		add(consumer.HeaderSpecVersion, "1.0")
		add(consumer.HeaderID, id)
		add(consumer.HeaderSource, source)
		add(consumer.HeaderType, typ)
		add(consumer.HeaderTime, when)
		if subject != "" {
			add(consumer.HeaderSubject, subject)
		}
		add(consumer.HeaderContentType, c.ContentType)
	}
	return m, publishedEvent{id: id, typ: typ, source: source, key: key}, nil
}
