package handlers

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Handler handles one event. It returns nil when the event is done; the
// effects it staged on tx are then applied atomically with completion. It
// must honour ctx: the engine cancels it when the attempt times out, when the
// claim's lease is lost, or when the worker drains.
type Handler interface {
	Handle(ctx context.Context, ev Event, tx *Tx) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, ev Event, tx *Tx) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, ev Event, tx *Tx) error { return f(ctx, ev, tx) }

// Router routes events to handlers by event type: to the handler registered
// for the type itself, or else to the handler of the longest pattern that
// matches it. Register all handlers before the engine starts; after that a
// Router is safe for concurrent use.
type Router struct {
	routes map[string]Handler
	// patterns are prefixes (a pattern without its trailing "*"), longest
	// first.
	patterns []patternRoute
}

type patternRoute struct {
	prefix  string
	handler Handler
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{routes: make(map[string]Handler)}
}

// Register routes events of type typ to h. It refuses an empty type, a nil
// handler and a type that already has a handler.
func (r *Router) Register(typ string, h Handler) error {
	switch {
	case typ == "":
		return fmt.Errorf("register: empty event type")
	case h == nil:
		return fmt.Errorf("register %q: nil handler", typ)
	}
	if _, ok := r.routes[typ]; ok {
		return fmt.Errorf("register %q: type already has a handler", typ)
	}
	r.routes[typ] = h
	return nil
}

// RegisterPattern routes events whose type matches pattern to h, unless
// their type has a handler of its own: pattern is a type ("inventory.
// received", as Register) or a prefix ending in "*" ("inventory.*", or "*"
// for every type). It refuses a pattern with a "*" anywhere else, and one
// that is already registered.
func (r *Router) RegisterPattern(pattern string, h Handler) error {
	prefix, wild := strings.CutSuffix(pattern, "*")
	switch {
	case strings.Contains(prefix, "*"):
		return fmt.Errorf("register %q: a pattern is a type, or a prefix ending in one \"*\"", pattern)
	case !wild:
		return r.Register(pattern, h)
	case h == nil:
		return fmt.Errorf("register %q: nil handler", pattern)
	}
	for _, p := range r.patterns {
		if p.prefix == prefix {
			return fmt.Errorf("register %q: pattern already has a handler", pattern)
		}
	}
	r.patterns = append(r.patterns, patternRoute{prefix: prefix, handler: h})
	slices.SortStableFunc(r.patterns, func(a, b patternRoute) int { return len(b.prefix) - len(a.prefix) })
	return nil
}

// Lookup returns the handler for typ: its own, or the longest matching
// pattern's.
func (r *Router) Lookup(typ string) (Handler, bool) {
	if h, ok := r.routes[typ]; ok {
		return h, true
	}
	for _, p := range r.patterns {
		if strings.HasPrefix(typ, p.prefix) {
			return p.handler, true
		}
	}
	return nil, false
}

// Patterns returns the patterns registered with RegisterPattern, longest
// first.
func (r *Router) Patterns() []string {
	out := make([]string, len(r.patterns))
	for i, p := range r.patterns {
		out[i] = p.prefix + "*"
	}
	return out
}

// Types returns the event types registered with Register, sorted; patterns
// are not among them.
func (r *Router) Types() []string {
	types := make([]string, 0, len(r.routes))
	for t := range r.routes {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// Handle routes ev to its handler, or returns an error wrapping
// [ErrUnknownType].
func (r *Router) Handle(ctx context.Context, ev Event, tx *Tx) error {
	h, ok := r.Lookup(ev.Type)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownType, ev.Type)
	}
	return h.Handle(ctx, ev, tx)
}
