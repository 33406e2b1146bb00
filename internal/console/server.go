package console

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// Config is what a Server needs.
type Config struct {
	Backend Backend
	// Tokens and Trusted say who may come in; at least one is required
	// (the console is never open).
	Tokens  *Tokens
	Trusted *TrustedHeader
	// Audit receives the audit log, a JSON object per line (stderr);
	// AuditSink, when set, keeps it too (a capped Redis stream).
	Audit     io.Writer
	AuditSink AuditSink
	// SessionTTL is how long a browser stays logged in (12 h when 0).
	SessionTTL time.Duration
	// SecureCookies marks the session cookie Secure: set it when the
	// console is served over TLS, or behind a proxy that terminates it.
	SecureCookies bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Validate reports what is missing.
func (c *Config) Validate() error {
	var errs []error
	if c.Backend == nil {
		errs = append(errs, errors.New("console: no backend"))
	}
	if c.Tokens.Len() == 0 && (c.Trusted == nil || c.Trusted.Header == "") {
		errs = append(errs, errors.New("console: no access configured: give tokens (a file or a variable) or a trusted header set by an authenticating proxy"))
	}
	if c.Audit == nil {
		errs = append(errs, errors.New("console: no audit writer"))
	}
	return errors.Join(errs...)
}

// Server serves the console. Close stops the replays it runs and waits
// for them.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	sessions *sessions
	csrf     csrfKeys
	audit    *auditLog
	pages    *pages
	jobs     *jobs
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), sessions: newSessions(cfg.SessionTTL, cfg.Now), csrf: newCSRF(),
		audit: &auditLog{w: cfg.Audit, sink: cfg.AuditSink}, pages: pages, jobs: newJobs(cfg.Now)}
	s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	s.mux.ServeHTTP(w, r)
}

// Close cancels the replays that run and waits for them.
func (s *Server) Close() { s.jobs.close() }

func (s *Server) routes() {
	s.mux.Handle("GET /static/", http.FileServerFS(staticFS))
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.Handle("POST /logout", s.action("logout", s.logout, Viewer))
	s.mux.Handle("GET /{$}", s.view(s.overview))
	s.mux.Handle("GET /deadletters", s.view(s.deadLetters))
	s.mux.Handle("GET /deadletters/{topic}/{partition}/{offset}", s.view(s.deadLetter))
	s.mux.Handle("POST /replay/plan", s.action("replay dry run", s.replayPlan, Viewer))
	s.mux.Handle("POST /replay", s.action("replay", s.replay, Operator))
	s.mux.Handle("GET /jobs/{id}", s.view(s.job))
	s.mux.Handle("GET /keys", s.view(s.keys))
	s.mux.Handle("GET /keys/forget", s.view(s.forgetConfirm))
	s.mux.Handle("POST /keys/forget", s.action("forget", s.forget, Operator))
	s.mux.Handle("GET /keys/unblock", s.view(s.unblockConfirm))
	s.mux.Handle("POST /keys/unblock", s.action("unblock", s.unblock, Operator))
}

// securityHeaders: no script runs (the pages need none), nothing is
// framed, cached or sniffed, and no address leaks in a Referer.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// callerOf authenticates r: a bearer token, a session cookie, or the
// trusted header, in that order.
func (s *Server) callerOf(r *http.Request) (Caller, bool) {
	if tok, ok := bearer(r); ok {
		return s.cfg.Tokens.Lookup(tok)
	}
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if c, ok := s.sessions.caller(ck.Value); ok {
			return c, true
		}
	}
	return s.cfg.Trusted.caller(r)
}

// view serves a page to any caller; a browser that is not logged in is
// sent to the login page, anything else is told 401.
func (s *Server) view(page func(http.ResponseWriter, *http.Request, Caller)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.callerOf(r)
		if !ok {
			s.unauthenticated(w, r)
			return
		}
		page(w, r, c)
	})
}

// action serves a POST that changes something (or, for a replay's dry
// run, asks the backend to decide): it needs the caller's CSRF token and
// at least the role need, and every attempt is audited, refused ones
// too. do returns the target, the outcome and a detail for the log.
func (s *Server) action(name string, do func(http.ResponseWriter, *http.Request, Caller) (target, outcome, detail string), need Role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		c, ok := s.callerOf(r)
		if !ok {
			s.audit.write(r.Context(), AuditEntry{Who: "(unauthenticated)", Action: name, Outcome: "denied", Detail: "no valid token, session or trusted header"})
			s.unauthenticated(w, r)
			return
		}
		if !s.csrf.valid(r, c) {
			s.audit.write(r.Context(), AuditEntry{Who: c.Name, Role: string(c.Role), Action: name, Outcome: "denied", Detail: "missing or wrong CSRF token"})
			s.fail(w, r, c, http.StatusForbidden, "This action did not carry this page's CSRF token: reload the page and try again.")
			return
		}
		if need == Operator && c.Role != Operator {
			s.audit.write(r.Context(), AuditEntry{Who: c.Name, Role: string(c.Role), Action: name, Outcome: "denied", Detail: "needs the operator role"})
			s.fail(w, r, c, http.StatusForbidden, "Your role is "+string(c.Role)+": only an operator may "+name+".")
			return
		}
		target, outcome, detail := do(w, r, c)
		s.audit.write(r.Context(), AuditEntry{Who: c.Name, Role: string(c.Role), Action: name, Target: target, Outcome: outcome, Detail: detail})
	})
}

func (s *Server) unauthenticated(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.Header.Get("Authorization") == "" {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="fleet console"`)
	http.Error(w, "unauthenticated: give a token (Authorization: Bearer) or log in", http.StatusUnauthorized)
}
