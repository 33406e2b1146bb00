package handlers

import (
	"context"
	"fmt"
	"slices"
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

// Router routes events to handlers by event type. Register all handlers before
// the engine starts; after that a Router is safe for concurrent use.
type Router struct {
	routes map[string]Handler
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

// Lookup returns the handler for typ.
func (r *Router) Lookup(typ string) (Handler, bool) {
	h, ok := r.routes[typ]
	return h, ok
}

// Types returns the registered event types, sorted.
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
	h, ok := r.routes[ev.Type]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownType, ev.Type)
	}
	return h.Handle(ctx, ev, tx)
}
