package httphandler

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Options are the settings every endpoint shares.
type Options struct {
	// MaxConns bounds the connections to one endpoint, idle or busy; the
	// idle ones are kept for the next requests.
	MaxConns int
	// MaxResponseBytes caps the body read from a response: a longer
	// successful one is invalid_effect.
	MaxResponseBytes int64
	// CAFile, when set, holds the PEM certificates that an https
	// endpoint's chain must lead to, instead of the system's roots.
	CAFile string
	// AuthHeader and AuthValue, when AuthValue is set, go with every
	// request (Authorization: Bearer <token>, or a header of the
	// operator's). The value is never logged.
	AuthHeader, AuthValue string
}

// maxResponseBytes is the largest response limit: a body is read whole
// into memory.
const maxResponseBytes = 1 << 30

// DefaultOptions: 64 connections per endpoint, responses up to 1 MiB.
func DefaultOptions() Options {
	return Options{MaxConns: 64, MaxResponseBytes: 1 << 20, AuthHeader: "Authorization"}
}

// Check refuses options that cannot work.
func (o Options) Check() error {
	switch {
	case o.MaxConns < 1:
		return fmt.Errorf("http handler connections %d: must be at least 1", o.MaxConns)
	case o.MaxResponseBytes < 1 || o.MaxResponseBytes > maxResponseBytes:
		return fmt.Errorf("http handler response limit %d: must be 1 byte to 1 GiB", o.MaxResponseBytes)
	case o.AuthValue != "" && !httpguts.ValidHeaderFieldName(o.AuthHeader):
		return fmt.Errorf("http handler credential header %q: not a header name", o.AuthHeader)
	case !httpguts.ValidHeaderFieldValue(o.AuthValue):
		// Not repeated: it is the credential.
		return errors.New("http handler credential: holds characters a header may not carry (a line break?)")
	}
	return nil
}

// newClient is one endpoint's client: kept-alive connections bounded by
// MaxConns, TLS 1.2 or later with the CA file's roots, no redirects
// followed, no timeout of its own (the attempt's context bounds a request:
// the handler timeout, the lease, the drain).
func newClient(o Options) (*http.Client, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("http handler CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http handler CA file %s: no PEM certificate in it", o.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxConnsPerHost:     o.MaxConns,
		MaxIdleConnsPerHost: o.MaxConns,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}
