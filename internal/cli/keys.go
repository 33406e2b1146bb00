package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetworks/fleet/dedupe"
)

// keysCmd is `fleet keys`: an operator's view of idempotency records and
// of keys held up by ordered retries.
type keysCmd struct {
	Get     keysGetCmd     `cmd:"" help:"Show an event's idempotency record."`
	Forget  keysForgetCmd  `cmd:"" help:"Delete an event's idempotency record, so that the event runs again the next time it arrives (even if it was done)."`
	Blocked keysBlockedCmd `cmd:"" help:"List the keys held after a dead letter (--on-dead-letter hold), with their head event and age; --all adds the keys whose events wait behind one in a retry tier."`
	Unblock keysUnblockCmd `cmd:"" help:"Let a held key go: the events parked behind its dead-lettered head run, in order."`
}

// recordRef names one idempotency record: by its Redis key, or by the
// event's group, source, id and key.
type recordRef struct {
	Record    string `arg:"" optional:"" help:"The record's Redis key (fleet:idem:{<key>}:<identity>, the identity a digest of group, source and id); or give --group, --source, --id and --key."`
	redisConn `embed:""`
	Group     string `env:"FLEET_GROUP" help:"Consumer group the record belongs to."`
	Source    string `help:"The event's CloudEvents source."`
	ID        string `name:"id" help:"The event's CloudEvents id."`
	Key       string `help:"The event's Kafka message key (its aggregate). The record lives under it: without --key it is looked up as for a message that had none, under the event's id."`
}

// lookedUp says, for a record named by the event, what it was looked up
// for: a record under another message key is another record.
func (r *recordRef) lookedUp() string {
	if r.Record != "" {
		return ""
	}
	key := "no message key (so under the id " + r.ID + ")"
	if r.Key != "" {
		key = "message key " + r.Key
	}
	return fmt.Sprintf(" (group %s, source %s, id %s, %s)", r.Group, r.Source, r.ID, key)
}

func (r *recordRef) key() (string, error) {
	if r.Record != "" {
		if r.Source != "" || r.ID != "" || r.Key != "" {
			return "", configError{errors.New("give the record's Redis key or --source, --id and --key, not both")}
		}
		if !strings.HasPrefix(r.Record, "fleet:idem:{") {
			return "", configError{fmt.Errorf("%q is not an idempotency record key (fleet:idem:{<key>}:<identity>, the identity a digest of group, source and id)", r.Record)}
		}
		return r.Record, nil
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--group", r.Group}, {"--source", r.Source}, {"--id", r.ID}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return "", configError{fmt.Errorf("name the record by its Redis key, or give %s", strings.Join(missing, ", "))}
	}
	return dedupe.Key(r.Group, r.Key, r.Source, r.ID), nil
}

// open resolves the record's key and connects to its store; done closes
// the connection and the context's 10 s bound.
func (r *recordRef) open() (key string, s *dedupe.Redis, ctx context.Context, done func(), err error) {
	if key, err = r.key(); err != nil {
		return "", nil, nil, nil, err
	}
	s, closeStore, err := r.admin()
	if err != nil {
		return "", nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	return key, s, ctx, func() { cancel(); closeStore() }, nil
}

// admin connects to the store named by the reference, and checks that it
// answers: one line naming the Redis and the cause when it does not.
func (r *recordRef) admin() (*dedupe.Redis, func(), error) {
	target, err := r.target()
	if err != nil {
		return nil, nil, configError{err}
	}
	return openAdmin(target.quiet())
}

// openAdmin opens a store on target for an operator's command and pings it.
func openAdmin(target redisTarget) (*dedupe.Redis, func(), error) {
	c := target.client()
	s, err := dedupe.NewRedis(c, dedupe.DefaultConfig())
	if err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("redis at %s: %w", target.addr(), err)
	}
	return s, func() { _ = c.Close() }, nil
}

type keysGetCmd struct {
	recordRef
	JSON bool `name:"json" help:"Print the record as JSON."`
}

func (c *keysGetCmd) Run(stdout io.Writer) error {
	key, s, ctx, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	rec, err := s.Inspect(ctx, key)
	if errors.Is(err, dedupe.ErrNotFound) {
		return fmt.Errorf("no idempotency record at %s%s: the event was not seen in the dedupe window, or its record expired or was forgotten", key, c.lookedUp())
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(rec)
	}
	return printRecord(stdout, rec, time.Now())
}

func printRecord(w io.Writer, rec dedupe.Record, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, printable(v)) }
	row("key", rec.Key)
	state := rec.State
	if rec.State == dedupe.StateProcessing && !rec.LeaseDeadline.After(now) {
		state += " (lease expired: the next claim takes it over)"
	}
	row("state", state)
	row("fence", fmt.Sprint(rec.Fence))
	row("attempts", fmt.Sprint(rec.Attempts))
	if rec.Owner != "" {
		row("owner", rec.Owner)
	}
	if !rec.LeaseDeadline.IsZero() {
		row("lease deadline", rec.LeaseDeadline.UTC().Format(time.RFC3339Nano))
	}
	if rec.Fingerprint != "" {
		row("fingerprint", rec.Fingerprint)
	}
	if rec.Result != nil {
		row("result", fmt.Sprintf("%q", rec.Result))
	}
	if rec.TTL > 0 {
		row("expires in", rec.TTL.Round(time.Second).String())
	}
	return tw.Flush()
}

type keysForgetCmd struct {
	recordRef
}

func (c *keysForgetCmd) Run(stdout io.Writer) error {
	key, s, ctx, done, err := c.open()
	if err != nil {
		return err
	}
	defer done()
	ok, err := s.Forget(ctx, key)
	if err != nil {
		return fmt.Errorf("forget %s: %w", key, err)
	}
	if !ok {
		_, err = fmt.Fprintf(stdout, "no record at %s: nothing to forget\n", printable(key))
		return err
	}
	_, err = fmt.Fprintf(stdout, "forgot %s: the event runs again the next time it arrives\n", printable(key))
	return err
}
