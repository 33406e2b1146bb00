package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/httphandler"
	"github.com/prometheus/client_golang/prometheus"
)

// tokenVariable gives the HTTP handlers' credential directly. It has no
// flag: a flag's value shows in the process list.
const tokenVariable = "FLEET_HTTP_HANDLER_TOKEN" // #nosec G101 -- the name of a variable, not a credential

// httpHandlerFlags are the settings of handlers over HTTP (package
// internal/httphandler).
type httpHandlerFlags struct {
	HTTPHandlers                []string `name:"http-handler" env:"FLEET_HTTP_HANDLERS" sep:"," placeholder:"TYPE_PATTERN=URL" help:"POST events whose type matches TYPE_PATTERN (a type, or a prefix ending in *: inventory.*) to URL, in the CloudEvents HTTP binding; repeatable, or comma-separated in the variable. A type with a Go handler keeps it."`
	HTTPHandlerCAFile           string   `name:"http-handler-ca-file" env:"FLEET_HTTP_HANDLER_CA_FILE" help:"PEM bundle of the CAs that signed the HTTP handlers' certificates (default: the system roots)."`
	HTTPHandlerTokenFile        string   `name:"http-handler-token-file" env:"FLEET_HTTP_HANDLER_TOKEN_FILE" help:"File holding the credential sent to HTTP handlers, as Authorization: Bearer <it> (or in --http-handler-header); FLEET_HTTP_HANDLER_TOKEN gives it directly. Never logged."`
	HTTPHandlerHeader           string   `name:"http-handler-header" env:"FLEET_HTTP_HANDLER_HEADER" help:"Send the credential as it is in this header (such as X-Api-Key) instead of as a bearer token."`
	HTTPHandlerMaxConns         int      `name:"http-handler-max-conns" env:"FLEET_HTTP_HANDLER_MAX_CONNS" default:"64" help:"Connections to one HTTP handler endpoint, kept alive and reused."`
	HTTPHandlerMaxResponseBytes int64    `name:"http-handler-max-response-bytes" env:"FLEET_HTTP_HANDLER_MAX_RESPONSE_BYTES" default:"1048576" help:"Largest response body read from an HTTP handler; a larger successful one is dead-lettered as invalid_effect."`
}

// httpHandlers are the endpoints and their options, ready to register.
type httpHandlers struct {
	endpoints []httphandler.Endpoint
	options   httphandler.Options
}

// settings parses the endpoints and reads the credential.
func (c *httpHandlerFlags) settings() (httpHandlers, error) {
	var h httpHandlers
	var errs []error
	for _, spec := range trimAll(c.HTTPHandlers) {
		e, err := httphandler.ParseEndpoint(spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h.endpoints = append(h.endpoints, e)
	}
	h.options = httphandler.DefaultOptions()
	h.options.CAFile, h.options.MaxConns, h.options.MaxResponseBytes = c.HTTPHandlerCAFile, c.HTTPHandlerMaxConns, c.HTTPHandlerMaxResponseBytes
	token, err := c.token()
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case token == "":
	case c.HTTPHandlerHeader != "":
		h.options.AuthHeader, h.options.AuthValue = c.HTTPHandlerHeader, token
	default:
		h.options.AuthValue = "Bearer " + token
	}
	if c.HTTPHandlerHeader != "" && token == "" {
		errs = append(errs, errors.New("--http-handler-header without a credential: set --http-handler-token-file or "+tokenVariable))
	}
	if err := h.options.Check(); err != nil {
		errs = append(errs, err)
	} else if _, err := h.register(handlers.NewRouter(), nil); err != nil {
		errs = append(errs, err)
	}
	return h, errors.Join(errs...)
}

// token is the credential: the file's first line, or the variable.
func (c *httpHandlerFlags) token() (string, error) {
	fromVar := os.Getenv(tokenVariable)
	if c.HTTPHandlerTokenFile == "" {
		return strings.TrimSpace(fromVar), nil
	}
	if fromVar != "" {
		return "", fmt.Errorf("the HTTP handlers' credential is given twice: --http-handler-token-file and %s", tokenVariable)
	}
	b, err := os.ReadFile(c.HTTPHandlerTokenFile)
	if err != nil {
		return "", fmt.Errorf("http handler token file: %w", err)
	}
	token := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if token == "" {
		return "", fmt.Errorf("http handler token file %s: empty", c.HTTPHandlerTokenFile)
	}
	return token, nil
}

// register routes the endpoints on r, with their metrics registered in reg
// (none when reg is nil). It reports whether there was any endpoint.
func (h httpHandlers) register(r *handlers.Router, reg prometheus.Registerer) (bool, error) {
	if len(h.endpoints) == 0 {
		return false, nil
	}
	var m *httphandler.Metrics
	if reg != nil {
		m = httphandler.NewMetrics(reg)
	}
	return true, httphandler.Register(r, h.endpoints, h.options, m)
}
