package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The gates' scripts, shared by every Redis store: they hold no settings.
var (
	holdLua    = redis.NewScript(holdScript)
	parkLua    = redis.NewScript(parkScript)
	endLua     = redis.NewScript(endScript)
	unblockLua = redis.NewScript(unblockScript)
	releaseLua = redis.NewScript(releaseGateScript)
)

var _ Gates = (*Redis)(nil)

func gateKeys(gate string) []string { return []string{gate, gate + ":q"} }

// Hold implements Gates.
func (s *Redis) Hold(ctx context.Context, ref GateRef, head string, held bool) error {
	if err := checkHold(ref, head); err != nil {
		return err
	}
	s.trips.Add(1)
	flag := "0"
	if held {
		flag = "1"
	}
	gate := ref.Gate()
	if err := s.index(ctx, gate); err != nil {
		return err
	}
	n, err := holdLua.Run(ctx, s.c, gateKeys(gate), head, flag, ref.Group, ref.Topic, ref.Partition, ref.Key).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("hold %s: %w", gate, err)
	case n == 0:
		return ErrNotHead
	}
	return s.index(ctx, gate)
}

// Park implements Gates.
func (s *Redis) Park(ctx context.Context, gate, record string, f Follower, limits GateLimits) (ParkAnswer, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	slice, err := s.slice(ctx)
	if err != nil {
		return 0, fmt.Errorf("park in %s: %w", gate, err)
	}
	s.trips.Add(1)
	n, err := parkLua.Run(ctx, s.c, append(gateKeys(gate), record), f.Identity, f.Fingerprint, f.encode(), limits.MaxFollowers,
		s.retentionMS, slice).Int64()
	if err != nil {
		return 0, fmt.Errorf("park in %s: %w", gate, err)
	}
	switch n {
	case replyParkParked:
		return ParkQueued, nil
	case replyParkFree:
		return ParkFree, nil
	case replyParkHead:
		return ParkHead, nil
	case replyParkDup:
		return ParkDuplicate, nil
	case replyParkConflict:
		return ParkConflict, nil
	case replyParkOverflow:
		return ParkOverflow, nil
	case replyParkBefore:
		return ParkQueuedBefore, nil
	}
	return 0, fmt.Errorf("park in %s: unexpected reply %d", gate, n)
}

// End implements Gates.
func (s *Redis) End(ctx context.Context, gate, head string) (*Follower, error) {
	if !isIdentity(head) {
		return nil, fmt.Errorf("%w: head %q is not an identity", ErrInvalid, head)
	}
	return s.end(ctx, gate, head)
}

// Skip implements Gates.
func (s *Redis) Skip(ctx context.Context, gate, head, by string) (*Follower, error) {
	if !isIdentity(head) || !isIdentity(by) {
		return nil, fmt.Errorf("%w: head %q or %q is not an identity", ErrInvalid, head, by)
	}
	return s.end(ctx, gate, head, by)
}

// end runs endScript.
func (s *Redis) end(ctx context.Context, gate string, args ...any) (*Follower, error) {
	s.trips.Add(1)
	v, err := endLua.Run(ctx, s.c, gateKeys(gate), args...).Result()
	if n, ok := v.(int64); err == nil && ok && n == 0 {
		s.unindex(ctx, gate)
		return nil, nil
	}
	if err != nil {
		return released("", err)
	}
	return released(fmt.Sprint(v), nil)
}

// Unblock implements Gates.
func (s *Redis) Unblock(ctx context.Context, gate string) (*Follower, error) {
	s.trips.Add(1)
	v, err := unblockLua.Run(ctx, s.c, gateKeys(gate)).Result()
	if n, ok := v.(int64); err == nil && ok {
		if n == 0 {
			return nil, ErrNotHeld
		}
		s.unindex(ctx, gate)
		return nil, nil
	}
	if err != nil {
		return released("", err)
	}
	return released(fmt.Sprint(v), nil)
}

// released decodes a released follower; a nil reply is none.
func released(elem string, err error) (*Follower, error) {
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return decodeFollower(elem)
}

// Gate implements Gates.
func (s *Redis) Gate(ctx context.Context, gate string) (*GateInfo, error) {
	s.trips.Add(1)
	h, err := s.c.HGetAll(ctx, gate).Result()
	if err != nil {
		return nil, fmt.Errorf("gate %s: %w", gate, err)
	}
	return gateInfo(gate, h)
}

// gateInfo reads a gate's fields; nil when there is no gate.
func gateInfo(gate string, h map[string]string) (*GateInfo, error) {
	if h["h"] == "" {
		return nil, nil
	}
	g := &GateInfo{Key: gate, Head: h["h"], ReleasedBy: h["b"], Ref: GateRef{Group: h["rg"], Topic: h["rt"], Key: h["rk"]}}
	g.Ref.Partition, _ = strconv.Atoi(h["rp"])
	if len(h["s"]) == 1 {
		g.State = GateState(h["s"][0])
	}
	if ms, err := strconv.ParseInt(h["t"], 10, 64); err == nil {
		g.Since = time.UnixMilli(ms)
	}
	g.Queued, _ = strconv.Atoi(h["n"])
	g.Bytes, _ = strconv.ParseInt(h["bytes"], 10, 64)
	if m := h["m"]; m != "" && g.State == GateReleased {
		f, err := decodeFollower(m)
		if err != nil {
			return nil, err
		}
		g.Released = f
	}
	return g, nil
}

// ReleaseGate implements Gates.
func (s *Redis) ReleaseGate(ctx context.Context, l Lease, ref GateRef, step GateStep) (*Follower, error) {
	gate := ref.Gate()
	if err := checkGate(l.Key, gate); err != nil {
		return nil, err
	}
	if step != GateEndHead {
		if err := s.index(ctx, gate); err != nil {
			return nil, err
		}
	}
	s.trips.Add(1)
	v, err := releaseLua.Run(ctx, s.c, append([]string{l.Key}, gateKeys(gate)...), l.Owner, l.Fence, s.retentionMS, step.code(),
		ref.Group, ref.Topic, ref.Partition, ref.Key).Result()
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", l.Key, err)
	}
	if step != GateEndHead {
		if err := s.index(ctx, gate); err != nil {
			return nil, err
		}
	}
	switch v := v.(type) {
	case int64:
		switch v {
		case replyOK:
			return nil, nil
		case replyLost:
			return nil, ErrLeaseLost
		case replyGateGone:
			s.unindex(ctx, gate)
			return nil, nil
		case replyHoldRefused:
			return nil, ErrNotHead
		}
	case []any:
		if elem, ok := v[1].(string); len(v) == 2 && ok {
			return decodeFollower(elem)
		}
	}
	return nil, fmt.Errorf("release %s: %w: unexpected reply %v", l.Key, ErrInvalid, v)
}

// Replies of releaseGateScript beside released and lost: the end deleted
// the gate; the hold was refused (the gate names another head).
const (
	replyGateGone    = 2
	replyHoldRefused = 3
)

// GateIndex is the index of gates: a sorted set of gate keys by the time
// they were indexed (ms), in a slot of its own. An entry is added before
// its gate can be made, and removed after its gate is deleted, so that a
// crash between leaves an entry without a gate (ListGates drops it), never
// a gate without an entry. The index is in another slot than the gates, so
// both sides look again: a hold adds the entry again after making its gate
// (another worker may have removed it for the gate deleted before), and a
// removal puts it back when the gate exists again (another worker may have
// made it since).
const GateIndex = "fleet:order:index"

// index enters gate in the index of gates, if it is not there yet.
func (s *Redis) index(ctx context.Context, gate string) error {
	s.trips.Add(1)
	now := float64(time.Now().UnixMilli())
	if err := s.c.ZAddNX(ctx, GateIndex, redis.Z{Score: now, Member: gate}).Err(); err != nil {
		return fmt.Errorf("index gate %s: %w", gate, err)
	}
	return nil
}

// unindex removes a deleted gate from the index. A failure leaves an entry
// without a gate, which ListGates drops.
func (s *Redis) unindex(ctx context.Context, gate string) {
	s.trips.Add(2)
	s.c.ZRem(ctx, GateIndex, gate)
	if n, err := s.c.Exists(ctx, gate).Result(); err == nil && n > 0 {
		_ = s.index(ctx, gate)
	}
}

// ListGates implements Gates: the oldest entries of the index, read in one
// pipeline. An entry whose gate is gone and that is older than a minute (a
// gate being made is indexed first) is dropped.
func (s *Redis) ListGates(ctx context.Context, limit int) (GateList, error) {
	s.trips.Add(2)
	total, err := s.c.ZCard(ctx, GateIndex).Result()
	if err != nil {
		return GateList{}, fmt.Errorf("list gates: %w", err)
	}
	entries, err := s.c.ZRangeWithScores(ctx, GateIndex, 0, int64(max(limit, 1)-1)).Result()
	if err != nil {
		return GateList{}, fmt.Errorf("list gates: %w", err)
	}
	pipe := s.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(entries))
	for i, z := range entries {
		key, _ := z.Member.(string)
		cmds[i] = pipe.HGetAll(ctx, key)
	}
	if len(entries) > 0 {
		s.trips.Add(1)
		if _, err := pipe.Exec(ctx); err != nil {
			return GateList{}, fmt.Errorf("list gates: %w", err)
		}
	}
	list := GateList{Total: int(total)}
	for i, z := range entries {
		key, _ := z.Member.(string)
		g, err := gateInfo(key, cmds[i].Val())
		if err != nil {
			return GateList{}, err
		}
		if g == nil {
			if time.Since(time.UnixMilli(int64(z.Score))) > time.Minute {
				s.unindex(ctx, key)
				list.Total--
			}
			continue
		}
		list.Gates = append(list.Gates, *g)
	}
	return list, nil
}
