package console

import (
	"net/http"
)

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.callerOf(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.render(w, http.StatusOK, "login", Caller{}, "Log in", "")
}

// login makes a session from a token given in the form. A wrong token is
// audited, and answered like any other wrong token.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if crossSite(r) {
		// Another site's form would log the browser in as the holder of a
		// token of its choosing (login CSRF).
		s.audit.write(r.Context(), AuditEntry{Who: "(unauthenticated)", Action: "login", Outcome: "denied", Detail: "cross-site"})
		s.render(w, http.StatusForbidden, "login", Caller{}, "Log in", "Log in from the console's own page.")
		return
	}
	c, ok := s.cfg.Tokens.Lookup(r.PostFormValue("token"))
	if !ok {
		s.audit.write(r.Context(), AuditEntry{Who: "(unauthenticated)", Action: "login", Outcome: "denied", Detail: "unknown token"})
		s.render(w, http.StatusUnauthorized, "login", Caller{}, "Log in", "That token is not one of the console's.")
		return
	}
	id := s.sessions.start(c)
	http.SetCookie(w, s.cookie(r, id, int(s.cfg.SessionTTL.Seconds())))
	s.audit.write(r.Context(), AuditEntry{Who: c.Name, Role: string(c.Role), Action: "login", Outcome: "ok"})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, c Caller) (string, string, string) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.end(ck.Value)
	}
	http.SetCookie(w, s.cookie(r, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return "", "ok", ""
}

// cookie is the session cookie: HttpOnly and SameSite=Strict always, and
// Secure whenever the console is served over TLS or told it is behind it
// (SecureCookies); over plain HTTP (fleet dev, on loopback) a browser
// would not keep a Secure cookie.
func (s *Server) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: sessionCookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, // #nosec G124 -- Secure as above
		Secure: s.cfg.SecureCookies || r.TLS != nil, MaxAge: maxAge}
}
