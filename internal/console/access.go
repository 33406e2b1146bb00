package console

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Role is what a caller may do.
type Role string

// The roles: a viewer reads, an operator also acts.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
)

// Caller is who makes a request.
type Caller struct {
	// Name is who, as the audit log writes it: the token's name, or the
	// user the trusted header names.
	Name string
	Role Role
	// binding is what the caller's CSRF token is bound to: a session id,
	// the digest of a bearer token, or the trusted user's name.
	binding string
}

// minTokenLen is the shortest token accepted: a guessable token is no
// access control.
const minTokenLen = 16

// token is a configured token, kept only as its SHA-256 digest.
type token struct {
	name   string
	role   Role
	digest [sha256.Size]byte
}

// Tokens are the configured bearer tokens.
type Tokens struct{ list []token }

// ParseTokens reads tokens, one per line: "<name> <role> <token>", the
// role viewer or operator; blank lines and lines starting with # are
// skipped. The tokens are kept hashed; the text is not. Names must be
// unique, and so must tokens.
func ParseTokens(text string) (*Tokens, error) {
	t := &Tokens{}
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tok, err := parseToken(line)
		if err != nil {
			return nil, fmt.Errorf("tokens, line %d: %w", n, err)
		}
		if names[tok.name] {
			return nil, fmt.Errorf("tokens, line %d: the name %q is given twice", n, tok.name)
		}
		if _, ok := t.find(tok.digest); ok {
			return nil, fmt.Errorf("tokens, line %d: the same token is given twice", n)
		}
		names[tok.name] = true
		t.list = append(t.list, tok)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return t, nil
}

func parseToken(line string) (token, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return token{}, errors.New(`want "<name> <role> <token>"`)
	}
	role := Role(f[1])
	if role != Viewer && role != Operator {
		return token{}, fmt.Errorf("role %q: want viewer or operator", f[1])
	}
	if len(f[2]) < minTokenLen {
		return token{}, fmt.Errorf("the token of %s is shorter than %d characters", f[0], minTokenLen)
	}
	return token{name: f[0], role: role, digest: sha256.Sum256([]byte(f[2]))}, nil
}

// Len is how many tokens there are.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.list)
}

// Lookup returns the caller a token stands for.
func (t *Tokens) Lookup(secret string) (Caller, bool) {
	d := sha256.Sum256([]byte(secret))
	tok, ok := t.find(d)
	if !ok {
		return Caller{}, false
	}
	return Caller{Name: tok.name, Role: tok.role, binding: "bearer:" + string(d[:])}, true
}

// find compares d with every digest, in constant time each.
func (t *Tokens) find(d [sha256.Size]byte) (token, bool) {
	var found token
	ok := false
	if t == nil {
		return found, false
	}
	for _, tok := range t.list {
		if subtle.ConstantTimeCompare(tok.digest[:], d[:]) == 1 {
			found, ok = tok, true
		}
	}
	return found, ok
}

// TrustedHeader names the user in a header that an authenticating proxy
// sets (and strips from what clients send): the console must be reachable
// only through that proxy.
type TrustedHeader struct {
	// Header holds the user's name, e.g. X-Forwarded-User.
	Header string
	// Operators are the users given the operator role; the others view.
	Operators []string
}

// caller returns the user the header names.
func (h *TrustedHeader) caller(r *http.Request) (Caller, bool) {
	if h == nil || h.Header == "" {
		return Caller{}, false
	}
	name := strings.TrimSpace(r.Header.Get(h.Header))
	if name == "" || len(name) > 256 {
		return Caller{}, false
	}
	role := Viewer
	for _, op := range h.Operators {
		if op == name {
			role = Operator
		}
	}
	return Caller{Name: name, Role: role, binding: "header:" + name}, true
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
