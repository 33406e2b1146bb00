package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/segmentio/kafka-go"
	"golang.org/x/term"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/console"
)

// dlqCmd is `fleet dlq`: dead letters, listed and replayed.
type dlqCmd struct {
	List   dlqListCmd   `cmd:"" help:"List dead letters: a table, every header and the value with --long, or JSON lines with --json."`
	Replay dlqReplayCmd `cmd:"" help:"Republish dead letters to their original topic, with their ids: events already done are skipped."`
}

// dlqFilter selects dead letters.
type dlqFilter struct {
	Brokers       []string `env:"FLEET_BROKERS" sep:"," help:"Kafka bootstrap brokers, host:port, comma-separated."`
	Topic         string   `required:"" help:"Source topic (its dead letters are in <topic>.dlq), or the dead-letter topic itself."`
	Type          string   `help:"Only events of this type."`
	Key           string   `help:"Only events with this message key."`
	Source        string   `help:"Only events from this source."`
	ID            string   `name:"id" help:"Only the event with this id."`
	Group         string   `env:"FLEET_GROUP" help:"Only the dead letters of this consumer group (dead letters of several groups share one topic)."`
	Reason        string   `enum:",decode,unknown_type,permanent,conflict,attempts_exhausted,invalid_effect,invalid_record,retry_too_large,parked_overflow,parked_too_large,too_large,too_many_headers,too_deep,too_long" default:"" help:"Only dead letters with this reason: decode, unknown_type, permanent, conflict, attempts_exhausted, invalid_effect, invalid_record, retry_too_large, parked_overflow, parked_too_large, too_large, too_many_headers, too_deep or too_long."`
	Since         string   `help:"Only dead letters written at or after this time: RFC 3339, or a duration ago (90m)."`
	Until         string   `help:"Only dead letters written before this time: RFC 3339, or a duration ago."`
	kafkaSecurity `embed:""`

	since, until time.Time
	dialer       *kafka.Dialer
	// listOnly keeps of each dead letter only what a list shows (lighten):
	// a topic of many large dead letters is read whole.
	listOnly bool
}

func (f *dlqFilter) validate() error {
	var errs []error
	f.Brokers = trimAll(f.Brokers)
	if len(f.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required (--brokers or FLEET_BROKERS)"))
	}
	now := time.Now()
	var err error
	if f.since, err = console.ParseWhen(f.Since, now); err != nil {
		errs = append(errs, fmt.Errorf("since: %w", err))
	}
	if f.until, err = console.ParseWhen(f.Until, now); err != nil {
		errs = append(errs, fmt.Errorf("until: %w", err))
	}
	if f.dialer, err = f.kafkaDialer(); err != nil {
		errs = append(errs, err)
	}
	if !f.since.IsZero() && !f.until.IsZero() && !f.since.Before(f.until) {
		errs = append(errs, fmt.Errorf("since %s is not before until %s", f.Since, f.Until))
	}
	if err := errors.Join(errs...); err != nil {
		return configError{err}
	}
	return nil
}

func (f *dlqFilter) dlqTopic() string {
	if strings.HasSuffix(f.Topic, ".dlq") {
		return f.Topic
	}
	return consumer.DeadLetterTopic(f.Topic)
}

func (f *dlqFilter) match(d *deadLetter) bool {
	switch {
	case f.Type != "" && d.Event.Type != f.Type,
		f.Key != "" && string(d.Msg.Key) != f.Key,
		f.Source != "" && d.Event.Source != f.Source,
		f.ID != "" && d.Event.ID != f.ID,
		f.Reason != "" && d.Reason != f.Reason,
		f.Group != "" && d.Group != f.Group,
		!f.since.IsZero() && d.Msg.Time.Before(f.since),
		!f.until.IsZero() && !d.Msg.Time.Before(f.until):
		return false
	}
	return true
}

// deadLetter is one message of a dead-letter topic, read back.
type deadLetter struct {
	Msg       kafka.Message
	Event     handlers.Event
	DecodeErr error

	Reason, Error, Group string
	// Identity is the event's identity as the engine wrote it (empty for
	// an event that did not decode).
	Identity          string
	Attempts          int
	OriginalTopic     string
	OriginalPartition int
	OriginalOffset    int64
	FirstFailure      string
	LastFailure       string
}

// lighten drops what a list of dead letters does not show: the value, the
// headers (read into the fields above), the event's data and extensions.
func (d *deadLetter) lighten() {
	d.Msg.Value, d.Msg.Headers = nil, nil
	d.Event.Data, d.Event.Extensions = nil, nil
}

func newDeadLetter(m kafka.Message) deadLetter {
	d := deadLetter{Msg: m, OriginalPartition: -1, OriginalOffset: -1}
	d.Event, d.DecodeErr = consumer.Decode(&m)
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case consumer.HeaderErrorKind:
			d.Reason = v
		case consumer.HeaderErrorMessage:
			d.Error = v
		case consumer.HeaderConsumerGroup:
			d.Group = v
		case consumer.HeaderAttempts:
			d.Attempts, _ = strconv.Atoi(v)
		case consumer.HeaderOriginalTopic:
			d.OriginalTopic = v
		case consumer.HeaderOriginalPartition:
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				d.OriginalPartition = n
			}
		case consumer.HeaderOriginalOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				d.OriginalOffset = n
			}
		case consumer.HeaderIdentity:
			d.Identity = v
		case consumer.HeaderFirstFailure:
			d.FirstFailure = v
		case consumer.HeaderLastFailure:
			d.LastFailure = v
		}
	}
	return d
}

// readTopic reads every message a topic holds now, partition by partition,
// in offset order, calling fn for each.
func readTopic(ctx context.Context, brokers []string, dialer *kafka.Dialer, topic string, fn func(kafka.Message) error) error {
	t := consumer.Transport(dialer)
	defer t.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: t, Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		if len(md.Topics) == 1 && errors.Is(md.Topics[0].Error, kafka.UnknownTopicOrPartition) {
			return errNoTopic
		}
		return fmt.Errorf("topic %s: %v", topic, md.Topics[0].Error)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	parts := offs.Topics[topic]
	for i := range parts {
		p := parts[i]
		if p.Error != nil {
			return fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
	}
	// In partition order, for a stable listing.
	for id := range len(md.Topics[0].Partitions) {
		for _, p := range parts {
			if p.Partition != id || p.LastOffset <= p.FirstOffset {
				continue
			}
			if err := readPartition(ctx, brokers, dialer, topic, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func readPartition(ctx context.Context, brokers []string, dialer *kafka.Dialer, topic string, p kafka.PartitionOffsets, fn func(kafka.Message) error) error {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Dialer: dialer, Topic: topic, Partition: p.Partition, MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(p.FirstOffset); err != nil {
		return err
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, p.Partition, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Offset >= p.LastOffset-1 {
			return nil
		}
	}
}

// errNoTopic is a topic the cluster does not have.
var errNoTopic = errors.New("no such topic")

// collect reads the dead letters that match the filter. A dead-letter topic
// that does not exist holds none, if its source topic exists; a source
// topic that does not exist either is a mistake the caller hears of.
func (f *dlqFilter) collect(ctx context.Context) ([]deadLetter, error) {
	var out []deadLetter
	err := readTopic(ctx, f.Brokers, f.dialer, f.dlqTopic(), func(m kafka.Message) error {
		d := newDeadLetter(m)
		if f.match(&d) {
			if f.listOnly {
				d.lighten()
			}
			out = append(out, d)
		}
		return nil
	})
	if !errors.Is(err, errNoTopic) {
		return out, err
	}
	source := strings.TrimSuffix(f.dlqTopic(), ".dlq")
	if exists, err := topicExists(ctx, f.Brokers, f.dialer, source); err != nil || exists {
		return nil, err // no dead letter was ever written
	}
	return nil, configError{fmt.Errorf("neither %s nor %s exists at %s: check --topic and --brokers", source, f.dlqTopic(), strings.Join(f.Brokers, ","))}
}

// topicExists asks the cluster whether it has topic.
func topicExists(ctx context.Context, brokers []string, dialer *kafka.Dialer, topic string) (bool, error) {
	t := consumer.Transport(dialer)
	defer t.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: t, Timeout: 10 * time.Second}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return false, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	return len(md.Topics) == 1 && md.Topics[0].Error == nil, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

type dlqListCmd struct {
	dlqFilter
	JSON bool `name:"json" help:"Print JSON lines, one per dead letter."`
	Long bool `help:"Print each dead letter whole: every header, the whole error message, and the value (its first 4 KiB)."`
}

// dlqLine is a dead letter as a JSON line.
type dlqLine struct {
	Topic             string            `json:"topic"`
	Partition         int               `json:"partition"`
	Offset            int64             `json:"offset"`
	Time              time.Time         `json:"time"`
	Key               string            `json:"key"`
	Type              string            `json:"type,omitempty"`
	Source            string            `json:"source,omitempty"`
	ID                string            `json:"id,omitempty"`
	DecodeError       string            `json:"decode_error,omitempty"`
	Reason            string            `json:"reason"`
	Error             string            `json:"error"`
	Attempts          int               `json:"attempts"`
	Group             string            `json:"group"`
	OriginalTopic     string            `json:"original_topic"`
	OriginalPartition int               `json:"original_partition"`
	OriginalOffset    int64             `json:"original_offset"`
	FirstFailure      string            `json:"first_failure_time"`
	LastFailure       string            `json:"last_failure_time"`
	Headers           map[string]string `json:"headers"`
}

func (c *dlqListCmd) Run(stdout io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	letters, err := c.collect(ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		for _, d := range letters {
			l := dlqLine{Topic: d.Msg.Topic, Partition: d.Msg.Partition, Offset: d.Msg.Offset, Time: d.Msg.Time.UTC(),
				Key: string(d.Msg.Key), Type: d.Event.Type, Source: d.Event.Source, ID: d.Event.ID,
				Reason: d.Reason, Error: d.Error, Attempts: d.Attempts, Group: d.Group,
				OriginalTopic: d.OriginalTopic, OriginalPartition: d.OriginalPartition, OriginalOffset: d.OriginalOffset,
				FirstFailure: d.FirstFailure, LastFailure: d.LastFailure, Headers: map[string]string{}}
			if d.DecodeErr != nil {
				l.DecodeError = d.DecodeErr.Error()
			}
			for _, h := range d.Msg.Headers {
				l.Headers[h.Key] = string(h.Value)
			}
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		return nil
	}
	if c.Long {
		for i := range letters {
			if err := printLong(stdout, &letters[i]); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DEAD-LETTERED\tFROM\tGROUP\tTYPE\tSOURCE\tID\tKEY\tREASON\tATTEMPTS\tERROR")
		for _, d := range letters {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Msg.Time.UTC().Format(time.RFC3339), dash(d.from()),
				dash(d.Group), dash(d.Event.Type), dash(d.Event.Source), dash(d.Event.ID), dash(string(d.Msg.Key)), dash(d.Reason),
				d.Attempts, truncateText(d.Error, 60))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(stdout, "%s in %s\n", plural(len(letters), "dead letter"), c.dlqTopic())
	return err
}

// from is where a dead letter's event was consumed from: the original
// topic, partition and offset (topic/partition@offset), or, for a dead
// letter without them, its own place in the dead-letter topic.
func (d *deadLetter) from() string {
	if d.OriginalTopic == "" || d.OriginalPartition < 0 || d.OriginalOffset < 0 {
		return fmt.Sprintf("%s/%d@%d", d.Msg.Topic, d.Msg.Partition, d.Msg.Offset)
	}
	return fmt.Sprintf("%s/%d@%d", d.OriginalTopic, d.OriginalPartition, d.OriginalOffset)
}

// printLong prints one dead letter whole: where it is, where it came from,
// every header and the value, escaped.
func printLong(w io.Writer, d *deadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "dead letter\t%s/%d@%d, written %s\n", d.Msg.Topic, d.Msg.Partition, d.Msg.Offset, d.Msg.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(tw, "from\t%s\n", printable(d.from()))
	fmt.Fprintf(tw, "key\t%s\n", dash(string(d.Msg.Key)))
	if d.DecodeErr != nil {
		fmt.Fprintf(tw, "not a CloudEvent\t%s\n", printable(d.DecodeErr.Error()))
	}
	for _, h := range d.Msg.Headers {
		fmt.Fprintf(tw, "%s\t%s\n", printable(h.Key), printable(string(h.Value)))
	}
	value := string(d.Msg.Value)
	if len(value) > maxShownValue {
		value = value[:maxShownValue] + fmt.Sprintf("… (%d bytes in all)", len(d.Msg.Value))
	}
	fmt.Fprintf(tw, "value\t%s\n\n", dash(value))
	return tw.Flush()
}

// maxShownValue caps the value --long prints.
const maxShownValue = 4096

// plural is "1 dead letter", "2 dead letters".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// dash is a table cell: "-" for nothing, else s made printable.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

// truncateText is a table cell of at most n runes, made printable.
func truncateText(s string, n int) string {
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return printable(s)
}

type dlqReplayCmd struct {
	dlqFilter
	redisConn `embed:""`
	DryRun    bool `help:"Say what would be replayed and what skipped, and change nothing."`
}

// Replay verdicts.
const (
	replayOtherGroup  = "skip: another consumer group's"
	replayOtherTopic  = "skip: names another original topic than the one its dead-letter topic belongs to"
	replayMismatch    = "skip: written without its value, and the message at its original offset is another event"
	replayPublish     = "replay"
	replayDone        = "skip: already done"
	replayUndecodable = "skip: undecodable, fix the producer"
	replayRepeat      = "skip: the same event is replayed from an earlier dead letter"
	replayConflict    = "skip: its record holds another payload (the first one stands; fleet keys forget to drop it)"
	replayGone        = "skip: written without its value, which its original topic no longer holds"
)

func (c *dlqReplayCmd) Run(stdout io.Writer) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Redis == "" {
		// A default could be somebody else's Redis, and every verdict
		// below is read from the records there.
		return configError{errors.New("replay checks every dead letter against the idempotency records of its group: name their Redis with --redis or FLEET_REDIS_URL")}
	}
	target, err := c.target()
	if err != nil {
		return configError{err}
	}
	ctx, stop := signalContext()
	defer stop()
	letters, err := c.collect(ctx)
	if err != nil {
		return err
	}
	if c.Group, err = replayGroup(c.Group, letters, c.dlqTopic()); err != nil {
		return err
	}
	store, closeStore, err := openAdmin(target.quiet())
	if err != nil {
		return err
	}
	defer closeStore()
	fmt.Fprintf(stdout, "checking against the records of group %s in Redis at %s\n", printable(c.Group), target.addr())

	var progress func(int)
	if !c.DryRun && term.IsTerminal(int(os.Stderr.Fd())) {
		bar := progressbar.NewOptions(len(letters), progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription("replaying"), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		progress = func(done int) { _ = bar.Set(done) }
	}
	r := replayer{brokers: c.Brokers, dialer: c.dialer, dlq: c.dlqTopic(), group: c.Group, store: store, dryRun: c.DryRun}
	tally, err := r.run(ctx, letters, progress)
	if err != nil {
		return err
	}
	if c.DryRun {
		if err := printDryRun(stdout, tally.steps); err != nil {
			return err
		}
	}
	if w := tally.warning(); w != "" {
		fmt.Fprintln(stdout, w)
	}
	_, err = fmt.Fprintln(stdout, tally.summary(len(letters), c.DryRun))
	return err
}

// printDryRun prints what a dry run would do with each dead letter.
func printDryRun(w io.Writer, steps []replayStep) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tTYPE\tID\tKEY\tTO\tVERDICT")
	for _, s := range steps {
		d := &s.letter
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", d.Msg.Partition, d.Msg.Offset, dash(d.Event.Type), dash(d.Event.ID),
			dash(string(d.Msg.Key)), s.to, "would "+s.verdict)
	}
	return tw.Flush()
}

// replayGroup is the consumer group to replay for: the one given, or else
// the one every dead letter names; several, without one given, is an
// error.
func replayGroup(given string, letters []deadLetter, topic string) (string, error) {
	if given != "" {
		return given, nil
	}
	groups := map[string]bool{}
	for _, d := range letters {
		if d.Group != "" {
			groups[d.Group] = true
		}
	}
	switch len(groups) {
	case 0:
		if len(letters) == 0 {
			return "", nil
		}
		return "", configError{fmt.Errorf("the dead letters of %s name no consumer group: give --group", topic)}
	case 1:
		for g := range groups {
			return g, nil
		}
	}
	names := slices.Sorted(maps.Keys(groups))
	return "", configError{fmt.Errorf("%s holds the dead letters of %d consumer groups (%s): give --group", topic, len(names), strings.Join(names, ", "))}
}

// sameEvent reports whether ev, fetched back from a dead letter's original
// offset, is the dead letter's event: its identity is the one the engine
// wrote, or, for a dead letter without it, its id and source are the ones
// the dead letter kept.
func sameEvent(group string, d *deadLetter, ev handlers.Event) bool {
	if d.Identity != "" {
		return handlers.IdempotencyKey(group, ev.Source, ev.ID) == d.Identity
	}
	id, src := headerNamed(d.Msg.Headers, consumer.HeaderID), headerNamed(d.Msg.Headers, consumer.HeaderSource)
	return id != "" && id == ev.ID && src == ev.Source
}

// headerNamed returns the value of the header named exactly key, or "".
func headerNamed(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// dropped reports whether a dead letter lost part to fit its topic
// (consumer.HeaderDropped).
func dropped(hs []kafka.Header, part string) bool {
	for _, h := range hs {
		if h.Key == consumer.HeaderDropped {
			for _, p := range strings.Split(string(h.Value), ",") {
				if p == part {
					return true
				}
			}
		}
	}
	return false
}

// fleetOwn returns fleet's own headers of a dead letter.
func fleetOwn(hs []kafka.Header) []kafka.Header {
	var out []kafka.Header
	for _, h := range hs {
		if strings.HasPrefix(h.Key, "fleet-") {
			out = append(out, h)
		}
	}
	return out
}
