package effects

import (
	"fmt"
	"strings"

	"github.com/fleetworks/fleet/handlers"
)

// CheckBound returns an *Error wrapping ErrUnbound for the first effect on
// a key that a handler of an event of aggregate may not write, or nil:
//
//   - a key of fleet's own (fleet:…): the idempotency records live there,
//     and a handler could otherwise mark another event of its aggregate
//     done;
//   - a key that is not bound to the aggregate (handlers.BoundTo): a copy
//     of an event under another message key must not touch the first key's
//     state, and the effects of a completion must lie in the Redis Cluster
//     slot of its record.
func CheckBound(aggregate string, ops []handlers.Op) error {
	for i, op := range ops {
		if strings.HasPrefix(op.Key, "fleet:") {
			return &Error{Index: i, Err: ErrUnbound,
				Reason: fmt.Sprintf("%s %s: keys starting with fleet: are fleet's own", op.Kind, op.Key)}
		}
		if !handlers.BoundTo(op.Key, aggregate) {
			return &Error{Index: i, Err: ErrUnbound,
				Reason: fmt.Sprintf("%s %s is not a key of the event's aggregate: give it the hash tag {%s} (the message key)", op.Kind, op.Key, aggregate)}
		}
	}
	return nil
}
