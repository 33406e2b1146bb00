package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
)

// csrfField is the form field every action carries.
const csrfField = "csrf"

// csrfKeys make and check CSRF tokens: an HMAC of what the caller is bound
// to (session, bearer token, trusted user) under a key made at start. A
// page served to a caller carries the caller's token; a form posted from
// another site cannot know it.
type csrfKeys struct{ key []byte }

func newCSRF() csrfKeys {
	key := make([]byte, 32)
	// crypto/rand does not fail on any supported platform.
	_, _ = rand.Read(key)
	return csrfKeys{key: key}
}

// token is c's CSRF token.
func (k csrfKeys) token(c Caller) string {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(c.binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// valid reports whether r carries c's CSRF token, and does not come from
// another site (Sec-Fetch-Site, where the browser sends it).
func (k csrfKeys) valid(r *http.Request, c Caller) bool {
	if crossSite(r) {
		return false
	}
	got := r.PostFormValue(csrfField)
	return got != "" && hmac.Equal([]byte(got), []byte(k.token(c)))
}

// crossSite reports whether the browser says r comes from another site
// (Sec-Fetch-Site; a client that does not send it is not a browser, or an
// old one).
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return false
	}
	return true
}

// sign is the signature of msg for c: a page that shows a message from
// its query (what an action did) shows it only when the console wrote it
// for this caller, not when a link made elsewhere carries it.
func (k csrfKeys) sign(c Caller, msg string) string {
	m := hmac.New(sha256.New, k.key)
	// Not a CSRF token: that is the HMAC of the binding alone.
	m.Write([]byte("message\x00" + c.binding + "\x00" + msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// signed reports whether sig is msg's signature for c.
func (k csrfKeys) signed(c Caller, msg, sig string) bool {
	return sig != "" && hmac.Equal([]byte(sig), []byte(k.sign(c, msg)))
}
