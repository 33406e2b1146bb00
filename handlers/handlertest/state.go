package handlertest

import (
	"context"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/effects"
)

// State is the kit's Redis: the keys that the handlers' effects wrote,
// strings and hashes, with the meaning effects have in the fleet (package
// internal/effects). It implements handlers.View.
//
// Time stands still in the kit: a time to live is kept and reported by
// TTL, and never runs out.
type State struct {
	space *effects.Space
}

// stillTime is the kit's clock.
var stillTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// NewState returns an empty state.
func NewState() *State {
	return &State{space: effects.NewSpace(func() time.Time { return stillTime })}
}

// Get implements handlers.View: the string at key; "" when there is none.
func (s *State) Get(_ context.Context, key string) (string, error) {
	v, _ := s.space.Get(key)
	return v, nil
}

// HGetAll implements handlers.View.
func (s *State) HGetAll(_ context.Context, key string) (map[string]string, error) {
	return s.space.HGetAll(key), nil
}

// Type returns the type of key as Redis's TYPE names it: "string",
// "hash", or "none" when it does not exist.
func (s *State) Type(key string) string { return string(s.space.Type(key)) }

// TTL returns the time to live of key, as the last effect that set it
// left it; false when the key does not exist or has none.
func (s *State) TTL(key string) (time.Duration, bool) { return s.space.TTL(key) }

// Keys returns the keys that exist, sorted.
func (s *State) Keys() []string { return s.space.Keys() }

var _ handlers.View = (*State)(nil)
