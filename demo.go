package fleet

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/cli"
)

// Demo is what `dev` publishes to the embedded broker and checks once every
// message is finished. Without a Stream (or without a Demo), `dev` runs the
// domains and says how to publish to them, with Example when given.
type Demo struct {
	// Topic is the default --topic of `dev`.
	Topic string
	// Stream, when set, returns one run's messages. size carries --events,
	// --accounts (as Keys), --duplicates and a seed that differs between
	// runs, so that two runs on one Redis share no event id and no
	// aggregate.
	Stream func(size DemoSize) (DemoRun, error)
	// Example is the event a running `dev` suggests to publish by hand.
	Example DemoExample
}

// DemoSize is what `dev`'s flags ask of a demo stream.
type DemoSize struct {
	Events, Keys int
	Duplicates   float64
	Seed         uint64
}

// DemoRun is one demo stream and what a correct run makes of it.
type DemoRun struct {
	// Source is the events' ce_source, printed for the user.
	Source string
	// Messages are published in order to the demo topic.
	Messages []Message
	// Unique and Duplicates count the messages that are events: each
	// unique event must be processed once, each duplicate skipped.
	Unique, Duplicates int
	// Poison holds the dead-letter kind (fleet-error-kind: decode,
	// unknown_type, permanent, conflict, …) of every other message.
	Poison []string
	// Check reads the projections once every message is finished: a line
	// for the user, and what does not match.
	Check func(ctx context.Context, view handlers.View) (DemoCheck, error)
}

// DemoCheck is what a demo's check found.
type DemoCheck struct {
	// Summary is one line for the user ("all 50 balances match").
	Summary string
	// Problems are what does not match, one line each.
	Problems []string
}

// DemoExample is one event to publish by hand to a running `dev`, and a
// redis-cli command (after -u URL) that shows what it did, such as
// GET 'ledger:{acct-you}:balance'.
type DemoExample struct {
	Type, Key, Data, Look string
}

// Message is a Kafka message of a demo stream.
type Message struct {
	Key, Value []byte
	Headers    []Header
}

// Header is a Kafka message header.
type Header struct {
	Key   string
	Value []byte
}

// Event is ev as a Kafka message in the CloudEvents binary mode fleet
// reads: ce_* headers (extensions as ce_<name>), content-type, the data as
// value, keyed by key (ev.Key is not read). An empty attribute is left out,
// so that a demo can make a poison message.
func Event(key string, ev handlers.Event) Message {
	m := Message{Key: []byte(key), Value: ev.Data}
	add := func(k, v string) {
		if v != "" {
			m.Headers = append(m.Headers, Header{Key: k, Value: []byte(v)})
		}
	}
	add(consumer.HeaderSpecVersion, "1.0")
	add(consumer.HeaderID, ev.ID)
	add(consumer.HeaderSource, ev.Source)
	add(consumer.HeaderType, ev.Type)
	add(consumer.HeaderSubject, ev.Subject)
	if !ev.Time.IsZero() {
		add(consumer.HeaderTime, ev.Time.UTC().Format(time.RFC3339Nano))
	}
	add(consumer.HeaderContentType, ev.DataContentType)
	for _, name := range slices.Sorted(maps.Keys(ev.Extensions)) {
		add("ce_"+name, ev.Extensions[name])
	}
	return m
}

// DevDemo gives `dev` a demo stream and its check.
func DevDemo(d Demo) Option {
	return optionFunc(func(a *cli.App) {
		a.Demo = &cli.Demo{Topic: d.Topic, Stream: stream(d.Stream), Example: cli.DemoExample(d.Example)}
	})
}

// stream adapts a public demo stream to the command line's.
func stream(f func(DemoSize) (DemoRun, error)) func(cli.DemoSize) (*cli.DemoRun, error) {
	if f == nil {
		return nil
	}
	return func(size cli.DemoSize) (*cli.DemoRun, error) {
		run, err := f(DemoSize(size))
		if err != nil {
			return nil, err
		}
		if run.Check == nil {
			return nil, errors.New("the demo stream has no check")
		}
		out := &cli.DemoRun{Source: run.Source, Unique: run.Unique, Duplicates: run.Duplicates, Poison: run.Poison,
			Check: func(ctx context.Context, view handlers.View) (cli.DemoCheck, error) {
				c, err := run.Check(ctx, view)
				return cli.DemoCheck(c), err
			}}
		for _, m := range run.Messages {
			km := kafka.Message{Key: m.Key, Value: m.Value}
			for _, h := range m.Headers {
				km.Headers = append(km.Headers, kafka.Header(h))
			}
			out.Messages = append(out.Messages, km)
		}
		return out, nil
	}
}
