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
	n, err := holdLua.Run(ctx, s.c, gateKeys(gate), head, flag, ref.Group, ref.Topic, ref.Partition, ref.Key).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("hold %s: %w", gate, err)
	case n == 0:
		return ErrNotHead
	}
	return nil
}

// Park implements Gates.
func (s *Redis) Park(ctx context.Context, gate, record string, f Follower, limits GateLimits) (ParkAnswer, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	s.trips.Add(1)
	n, err := parkLua.Run(ctx, s.c, append(gateKeys(gate), record), f.Identity, f.Fingerprint, f.encode(), limits.MaxFollowers).Int64()
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
	}
	return 0, fmt.Errorf("park in %s: unexpected reply %d", gate, n)
}

// End implements Gates.
func (s *Redis) End(ctx context.Context, gate, head string) (*Follower, error) {
	if !isIdentity(head) {
		return nil, fmt.Errorf("%w: head %q is not an identity", ErrInvalid, head)
	}
	s.trips.Add(1)
	return released(endLua.Run(ctx, s.c, gateKeys(gate), head).Text())
}

// Unblock implements Gates.
func (s *Redis) Unblock(ctx context.Context, gate string) (*Follower, error) {
	s.trips.Add(1)
	v, err := unblockLua.Run(ctx, s.c, gateKeys(gate)).Result()
	if n, ok := v.(int64); err == nil && ok && n == 0 {
		return nil, ErrNotHeld
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
	if h["h"] == "" {
		return nil, nil
	}
	g := &GateInfo{Head: h["h"], ReleasedBy: h["b"], Ref: GateRef{Group: h["rg"], Topic: h["rt"], Key: h["rk"]}}
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
		if g.Released, err = decodeFollower(m); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// ReleaseGate implements Gates.
func (s *Redis) ReleaseGate(ctx context.Context, l Lease, ref GateRef, step GateStep) (*Follower, error) {
	gate := ref.Gate()
	if err := checkGate(l.Key, gate); err != nil {
		return nil, err
	}
	s.trips.Add(1)
	v, err := releaseLua.Run(ctx, s.c, append([]string{l.Key}, gateKeys(gate)...), l.Owner, l.Fence, s.retentionMS, step.code(),
		ref.Group, ref.Topic, ref.Partition, ref.Key).Result()
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", l.Key, err)
	}
	switch v := v.(type) {
	case int64:
		switch v {
		case replyOK:
			return nil, nil
		case replyLost:
			return nil, ErrLeaseLost
		}
	case []any:
		if elem, ok := v[1].(string); len(v) == 2 && ok {
			return decodeFollower(elem)
		}
	}
	return nil, fmt.Errorf("release %s: %w: unexpected reply %v", l.Key, ErrInvalid, v)
}
