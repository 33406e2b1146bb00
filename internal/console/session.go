package console

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// sessionCookie is the cookie a browser keeps after logging in with a
// token: a random session id, never the token.
const sessionCookie = "fleet_console_session"

// sessions are the logged-in browsers, in memory: a restart logs every
// browser out. Safe for concurrent use.
type sessions struct {
	mu   sync.Mutex
	ttl  time.Duration
	now  func() time.Time
	byID map[string]session
}

type session struct {
	caller  Caller
	expires time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, byID: map[string]session{}}
}

// start makes a session for c and returns its id.
func (s *sessions) start(c Caller) string {
	var b [32]byte
	// crypto/rand does not fail on any supported platform.
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	c.binding = "session:" + id
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, v := range s.byID {
		if now.After(v.expires) {
			delete(s.byID, k)
		}
	}
	s.byID[id] = session{caller: c, expires: now.Add(s.ttl)}
	return id
}

// caller returns the caller of a live session.
func (s *sessions) caller(id string) (Caller, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byID[id]
	if !ok || s.now().After(v.expires) {
		delete(s.byID, id)
		return Caller{}, false
	}
	return v.caller, true
}

// end forgets a session.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}
