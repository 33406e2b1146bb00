package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestLoginRefusesCrossSite: another site cannot log a browser in with
// the site's own token (login CSRF): the browser would then act, and be
// audited, as that token's holder.
func TestLoginRefusesCrossSite(t *testing.T) {
	s, _, audit := newTestServer(t)
	r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {viewerToken}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
		t.Fatalf("a cross-site login: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	if !strings.Contains(audit.String(), `"action":"login","outcome":"denied","detail":"cross-site`) {
		t.Fatalf("audit:\n%s", audit)
	}
}
