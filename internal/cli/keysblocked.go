package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
)

// gateScan bounds the gates an operator's command reads.
const gateScan = 100000

// keysBlockedCmd is `fleet keys blocked`.
type keysBlockedCmd struct {
	redisConn `embed:""`
	Group     string `env:"FLEET_GROUP" help:"Only this consumer group's keys."`
	All       bool   `help:"Every gated key, not only the held ones: also keys whose events wait behind one in a retry tier."`
	JSON      bool   `name:"json" help:"One JSON object per key."`
}

// blockedKey is one line of fleet keys blocked.
type blockedKey struct {
	Key        string    `json:"key"`
	Group      string    `json:"group"`
	Topic      string    `json:"topic"`
	Partition  int       `json:"partition"`
	State      string    `json:"state"`
	HeadRecord string    `json:"head_record"`
	Parked     int       `json:"parked"`
	Since      time.Time `json:"since"`
}

func (c *keysBlockedCmd) Run(stdout io.Writer) error {
	s, ctx, done, err := openGates(&c.redisConn)
	if err != nil {
		return err
	}
	defer done()
	list, err := s.ListGates(ctx, gateScan)
	if err != nil {
		return err
	}
	keys := blockedKeys(list.Gates, c.Group, c.All)
	if c.JSON {
		enc := json.NewEncoder(stdout)
		for _, k := range keys {
			if err := enc.Encode(k); err != nil {
				return err
			}
		}
		return nil
	}
	return printBlocked(stdout, keys, time.Now())
}

// blockedKeys are the gates to list: of group (all groups when empty),
// held ones only unless all, held first, then oldest first.
func blockedKeys(gates []dedupe.GateInfo, group string, all bool) []blockedKey {
	var out []blockedKey
	for _, g := range consumer.HeldFirst(gates) {
		if group != "" && g.Ref.Group != group || !all && g.State != dedupe.GateHeld {
			continue
		}
		out = append(out, blockedKey{Key: g.Ref.Key, Group: g.Ref.Group, Topic: g.Ref.Topic, Partition: g.Ref.Partition,
			State: g.State.String(), HeadRecord: dedupe.RecordKey(g.Ref.Key, g.Head), Parked: g.Queued, Since: g.Since.UTC()})
	}
	return out
}

func printBlocked(w io.Writer, keys []blockedKey, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tGROUP\tTOPIC\tPARTITION\tSTATE\tPARKED\tAGE\tHEAD RECORD (fleet keys get)")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", printable(k.Key), printable(k.Group), printable(k.Topic), k.Partition,
			k.State, k.Parked, now.Sub(k.Since).Round(time.Second), printable(k.HeadRecord))
	}
	if len(keys) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	return tw.Flush()
}

// keysUnblockCmd is `fleet keys unblock`.
type keysUnblockCmd struct {
	Key           string `arg:"" help:"The held key (the Kafka message key)."`
	redisConn     `embed:""`
	Brokers       []string `env:"FLEET_BROKERS" sep:"," help:"Kafka bootstrap brokers, host:port, comma-separated: the released event is written to <topic>.parked."`
	Group         string   `env:"FLEET_GROUP" help:"Consumer group (needed when the key is held in several)."`
	Topic         string   `help:"Source topic (needed when the key is held in several)."`
	Partition     int      `default:"-1" help:"Source partition (needed when the key is held in several)."`
	By            string   `help:"Who unblocks, for the log (default: $USER)."`
	kafkaSecurity `embed:""`
}

func (c *keysUnblockCmd) Run(stdout io.Writer) error {
	brokers := trimAll(c.Brokers)
	if len(brokers) == 0 {
		return configError{errors.New("brokers: at least one is required (--brokers or FLEET_BROKERS): the released event is written to <topic>.parked")}
	}
	dialer, err := c.kafkaDialer()
	if err != nil {
		return configError{err}
	}
	s, ctx, done, err := openGates(&c.redisConn)
	if err != nil {
		return err
	}
	defer done()
	ref, err := c.find(ctx, s)
	if err != nil {
		return err
	}
	pub := consumer.NewPublisher(brokers, dialer)
	defer pub.Close()
	f, err := consumer.Unblock(ctx, s, pub, ref)
	if err != nil {
		return fmt.Errorf("unblock %s: %w", printable(c.Key), err)
	}
	by := c.By
	if by == "" {
		by = os.Getenv("USER")
	}
	at := time.Now().UTC()
	slog.New(slog.NewJSONHandler(os.Stderr, nil)).Info("key unblocked", "key", ref.Key, "group", ref.Group, "topic", ref.Topic,
		"partition", ref.Partition, "by", by, "at", at, "released", f != nil)
	_, err = fmt.Fprintf(stdout, "unblocked %s (group %s, topic %s, partition %d) by %s at %s: %s\n", printable(ref.Key),
		printable(ref.Group), printable(ref.Topic), ref.Partition, printable(by), at.Format(time.RFC3339), released(ref, f != nil))
	return err
}

// released says what unblocking ref let go: the next event parked behind
// its head (follower), or nothing.
func released(ref dedupe.GateRef, follower bool) string {
	if !follower {
		return "nothing was parked behind its head"
	}
	return "its next event is written to " + consumer.ParkedTopic(ref.Topic) + " and runs; the rest follow in order"
}

// find is the held gate of the key that the flags select.
func (c *keysUnblockCmd) find(ctx context.Context, s *dedupe.Redis) (dedupe.GateRef, error) {
	list, err := s.ListGates(ctx, gateScan)
	if err != nil {
		return dedupe.GateRef{}, err
	}
	held := heldGates(list.Gates, dedupe.GateRef{Key: c.Key, Group: c.Group, Topic: c.Topic, Partition: c.Partition})
	switch len(held) {
	case 0:
		return dedupe.GateRef{}, fmt.Errorf("%s is not held%s (fleet keys blocked lists the held keys)", printable(c.Key), c.scope())
	case 1:
		return held[0], nil
	}
	return dedupe.GateRef{}, configError{fmt.Errorf("%s is held in %d places: name one with --group, --topic and --partition (fleet keys blocked lists them)", printable(c.Key), len(held))}
}

// heldGates are the held gates of scope's key in its group, topic and
// partition; an empty group or topic, or a negative partition, is any.
func heldGates(gates []dedupe.GateInfo, scope dedupe.GateRef) []dedupe.GateRef {
	var held []dedupe.GateRef
	for _, g := range gates {
		r := g.Ref
		if r.Key == scope.Key && g.State == dedupe.GateHeld && (scope.Group == "" || r.Group == scope.Group) &&
			(scope.Topic == "" || r.Topic == scope.Topic) && (scope.Partition < 0 || r.Partition == scope.Partition) {
			held = append(held, r)
		}
	}
	return held
}

func (c *keysUnblockCmd) scope() string {
	s := ""
	if c.Group != "" {
		s += " in group " + c.Group
	}
	if c.Topic != "" {
		s += " on " + c.Topic
	}
	if c.Partition >= 0 {
		s += " partition " + strconv.Itoa(c.Partition)
	}
	return s
}

// openGates connects to the store of an operator's command, with a 30 s
// bound on what it does; done closes both.
func openGates(r *redisConn) (*dedupe.Redis, context.Context, func(), error) {
	target, err := r.target()
	if err != nil {
		return nil, nil, nil, configError{err}
	}
	s, closeStore, err := openAdmin(target.quiet())
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	return s, ctx, func() { cancel(); closeStore() }, nil
}
