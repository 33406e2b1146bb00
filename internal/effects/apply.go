package effects

import (
	"fmt"
	"strconv"

	"github.com/fleetworks/fleet/handlers"
)

// Apply applies the effects of one run in order, each seeing the ones
// before it, all or none: on the first effect that Redis would refuse it
// returns an *Error wrapping ErrRefused and leaves the space as it was.
// Redis refuses a string effect on a hash, a hash effect on a string, an
// increment of a value that is no integer by Redis's rules or that leaves
// the 64-bit range, and a kind it does not know.
//
// Apply does not check which keys a handler may write: that is
// CheckBound's job, which the callers run first.
func (s *Space) Apply(ops []handlers.Op) error {
	r := &run{space: s, now: s.nowMS(), keys: make(map[string]*value, len(ops))}
	for i, op := range ops {
		if reason := r.apply(op); reason != "" {
			return &Error{Index: i, Reason: reason, Err: ErrRefused}
		}
	}
	for k, v := range r.keys {
		if v == nil {
			delete(s.keys, k)
		} else {
			s.keys[k] = v
		}
	}
	return nil
}

// run holds the keys one Apply touches, as its effects leave them, on
// copies, so that a refused effect leaves the space untouched. A nil value
// is a key that does not exist.
type run struct {
	space *Space
	now   int64 // Unix ms, one instant for the whole run, as in a script
	keys  map[string]*value
}

// get returns the run's copy of key, nil when it does not exist.
func (r *run) get(key string) *value {
	v, ok := r.keys[key]
	if !ok {
		v = r.space.lookup(key, r.now).clone()
		r.keys[key] = v
	}
	return v
}

// apply applies one effect to the run's copies, or returns why Redis
// refuses it.
func (r *run) apply(op handlers.Op) string {
	switch op.Kind {
	case handlers.OpSet:
		r.keys[op.Key] = &value{typ: String, str: op.Value}
	case handlers.OpDel:
		r.keys[op.Key] = nil
	case handlers.OpExpire:
		r.expire(op)
	case handlers.OpIncrBy:
		return r.incrBy(op)
	case handlers.OpHSet, handlers.OpHIncrBy, handlers.OpHDel:
		return r.hash(op)
	default:
		return fmt.Sprintf("unknown operation %v", op.Kind)
	}
	return ""
}

// expire is PEXPIRE with the time to live in whole milliseconds: zero or
// less deletes the key, and a missing key stays missing.
func (r *run) expire(op handlers.Op) {
	ms := op.TTL.Milliseconds()
	if ms <= 0 {
		r.keys[op.Key] = nil
		return
	}
	if v := r.get(op.Key); v != nil {
		v.expires = r.now + ms
	}
}

// incrBy is INCRBY: a missing key counts as 0, and the key keeps its time
// to live.
func (r *run) incrBy(op handlers.Op) string {
	v := r.get(op.Key)
	var cur int64
	if v != nil {
		if v.typ != String {
			return fmt.Sprintf("INCRBY %s: key holds a hash", op.Key)
		}
		n, ok := parseInt(v.str)
		if !ok {
			return fmt.Sprintf("INCRBY %s: value is not an integer", op.Key)
		}
		cur = n
	}
	sum, ok := addInt(cur, op.Delta)
	if !ok {
		return fmt.Sprintf("INCRBY %s: overflow", op.Key)
	}
	if v == nil {
		v = &value{typ: String}
		r.keys[op.Key] = v
	}
	v.str = strconv.FormatInt(sum, 10)
	return ""
}

// hash is HSET, HINCRBY and HDEL on one field.
func (r *run) hash(op handlers.Op) string {
	v := r.get(op.Key)
	if v != nil && v.typ != Hash {
		return fmt.Sprintf("%s %s: key holds a string", op.Kind, op.Key)
	}
	if op.Kind == handlers.OpHDel {
		if v != nil {
			delete(v.hash, op.Field)
			if len(v.hash) == 0 {
				r.keys[op.Key] = nil // Redis deletes an empty hash
			}
		}
		return ""
	}
	field := op.Value
	if op.Kind == handlers.OpHIncrBy {
		var cur int64
		if old, ok := v.field(op.Field); ok {
			if cur, ok = parseInt(old); !ok {
				return fmt.Sprintf("HINCRBY %s %s: value is not an integer", op.Key, op.Field)
			}
		}
		sum, ok := addInt(cur, op.Delta)
		if !ok {
			return fmt.Sprintf("HINCRBY %s %s: overflow", op.Key, op.Field)
		}
		field = strconv.FormatInt(sum, 10)
	}
	if v == nil {
		v = &value{typ: Hash, hash: map[string]string{}}
		r.keys[op.Key] = v
	}
	v.hash[op.Field] = field
	return ""
}
