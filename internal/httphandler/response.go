package httphandler

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// class is what a response's status makes of the run.
type class int

const (
	// succeeded: 2xx, the body holds the effects and the result.
	succeeded class = iota
	// failedPermanently: a 4xx other than 408 and 429, a redirect (not
	// followed: it could take the request and its token elsewhere), and
	// anything else no retry can change.
	failedPermanently
	// failedForNow: 408, 429 and 5xx, retried as a Go handler's retryable
	// error is.
	failedForNow
)

// classify is the class of a response status.
func classify(status int) class {
	switch {
	case status >= 200 && status < 300:
		return succeeded
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500 && status < 600:
		return failedForNow
	}
	return failedPermanently
}

// maxRetryAfter is the longest Retry-After honoured.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads a Retry-After header, delay-seconds or an HTTP date, as
// a delay from now; 0 when absent, unreadable or past.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return min(at.Sub(now), maxRetryAfter)
	}
	return 0
}

// bodySnippet is the start of a response body for an error message: at most
// 256 bytes, valid UTF-8, one line, without secrets (the credential, which
// an endpoint echoing the request would show in the dead letter, the log
// and /status).
func bodySnippet(b []byte, secrets ...string) string {
	const most = 256
	s := string(b)
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[credential]")
		}
	}
	cut := len(s) > most
	if cut {
		s = s[:most]
	}
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "\uFFFD")), " ")
	if cut {
		s += " …"
	}
	return s
}
