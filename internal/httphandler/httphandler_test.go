package httphandler

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetworks/fleet/handlers"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		spec, pattern, url, err string
	}{
		{spec: "inventory.*=http://localhost:8081/events", pattern: "inventory.*", url: "http://localhost:8081/events"},
		{spec: " payment.captured = https://pay.internal/h?x=1 ", pattern: "payment.captured", url: "https://pay.internal/h?x=1"},
		{spec: "*=http://h/", pattern: "*", url: "http://h/"},
		{spec: "inventory.*", err: "want TYPE_PATTERN=URL"},
		{spec: "=http://h/", err: "want TYPE_PATTERN=URL"},
		{spec: "a.*.b=http://h/", err: "prefix ending in one"},
		{spec: "a=ftp://h/", err: "want http or https"},
		{spec: "a=http:///x", err: "without a host"},
		{spec: "a=http://user:secret@h/", err: "credentials in the URL"},
		{spec: "a=http://h/#frag", err: "fragment"},
		{spec: "a=http://h/%zz", err: "invalid URL escape"},
	}
	for _, tt := range tests {
		e, err := ParseEndpoint(tt.spec)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %v, want an error with %q", tt.spec, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("%q: the error shows the password: %v", tt.spec, err)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.spec, err)
		case e.Pattern != tt.pattern || e.URL.String() != tt.url:
			t.Errorf("%q: %q %q, want %q %q", tt.spec, e.Pattern, e.URL, tt.pattern, tt.url)
		}
	}
}

func TestClassify(t *testing.T) {
	for status, want := range map[int]class{
		200: succeeded, 201: succeeded, 204: succeeded, 299: succeeded,
		301: failedPermanently, 307: failedPermanently, 400: failedPermanently, 401: failedPermanently,
		404: failedPermanently, 409: failedPermanently, 422: failedPermanently,
		408: failedForNow, 429: failedForNow, 500: failedForNow, 502: failedForNow, 503: failedForNow, 599: failedForNow,
		100: failedPermanently, 600: failedPermanently,
	} {
		if got := classify(status); got != want {
			t.Errorf("classify(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 120 ":                         2 * time.Minute,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"1.5":                           0,
		"999999999999":                  24 * time.Hour,
		"99999999999999999999999":       24 * time.Hour,
		"Sun, 29 Nov 2026 12:00:30 GMT": 30 * time.Second,
		"Sun, 29 Nov 2026 11:00:00 GMT": 0,
	}
	for v, want := range tests {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name, body string
		ops        []handlers.Op
		result     string
		err        string
	}{
		{name: "empty body", body: ""},
		{name: "blank body", body: " \n"},
		{name: "no effects", body: `{}`},
		{name: "a result alone", body: `{"result":"ok-42"}`, result: "ok-42"},
		{name: "every op", body: `{"effects":[
			{"op":"INCRBY","key":"stock:{s}","delta":5},
			{"op":"set","key":"k:{s}","value":"v"},
			{"op":"DEL","key":"d:{s}"},
			{"op":"HSET","key":"h:{s}","field":"f","value":"v"},
			{"op":"HINCRBY","key":"h:{s}","field":"n","delta":-2},
			{"op":"HDEL","key":"h:{s}","field":"old"},
			{"op":"PEXPIRE","key":"k:{s}","ttl_ms":1500},
			{"op":"EXPIRE","key":"d:{s}","ttl_ms":1}],"result":"r"}`,
			ops: []handlers.Op{
				{Kind: handlers.OpIncrBy, Key: "stock:{s}", Delta: 5},
				{Kind: handlers.OpSet, Key: "k:{s}", Value: "v"},
				{Kind: handlers.OpDel, Key: "d:{s}"},
				{Kind: handlers.OpHSet, Key: "h:{s}", Field: "f", Value: "v"},
				{Kind: handlers.OpHIncrBy, Key: "h:{s}", Field: "n", Delta: -2},
				{Kind: handlers.OpHDel, Key: "h:{s}", Field: "old"},
				{Kind: handlers.OpExpire, Key: "k:{s}", TTL: 1500 * time.Millisecond},
				{Kind: handlers.OpExpire, Key: "d:{s}", TTL: time.Millisecond},
			}, result: "r"},
		{name: "an empty value is a value", body: `{"effects":[{"op":"SET","key":"k","value":""}]}`,
			ops: []handlers.Op{{Kind: handlers.OpSet, Key: "k"}}},
		{name: "not JSON", body: `<html>ok</html>`, err: "not the effects format: not JSON"},
		{name: "a misspelt member", body: `{"effect":[{"op":"DEL","key":"k"}]}`, err: "/effect: a member the format does not have"},
		{name: "a misspelt member of an effect", body: `{"effects":[{"op":"INCRBY","key":"k","detla":5}]}`, err: "not the effects format"},
		{name: "an unknown op", body: `{"effects":[{"op":"FLUSHALL","key":"k"}]}`, err: `op "FLUSHALL"`},
		{name: "no key", body: `{"effects":[{"op":"DEL"}]}`, err: "key missing"},
		{name: "no delta", body: `{"effects":[{"op":"INCRBY","key":"k"}]}`, err: "delta missing"},
		{name: "a member the op does not take", body: `{"effects":[{"op":"INCRBY","key":"k","delta":1,"value":"x"}]}`, err: "value not taken"},
		{name: "a fractional delta", body: `{"effects":[{"op":"INCRBY","key":"k","delta":1.5}]}`, err: "/effects/0/delta: want an integer"},
		{name: "a delta as a string", body: `{"effects":[{"op":"INCRBY","key":"k","delta":"5"}]}`, err: "not the effects format"},
		{name: "a delta past int64", body: `{"effects":[{"op":"INCRBY","key":"k","delta":9223372036854775808}]}`, err: "not the effects format"},
		{name: "a zero ttl", body: `{"effects":[{"op":"PEXPIRE","key":"k","ttl_ms":0}]}`, err: "ttl_ms 0"},
		{name: "a result that is not a string", body: `{"result":{"a":1}}`, err: "/result: want a string, got an object"},
		{name: "a duplicate member", body: `{"result":"a","result":"b"}`, err: "not the effects format"},
		{name: "trailing data", body: `{} {}`, err: "not the effects format"},
		{name: "a bad effect after good ones stages nothing",
			body: `{"effects":[{"op":"INCRBY","key":"k","delta":1},{"op":"NOPE","key":"k"}]}`, err: "effect 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx := handlers.NewTx("idem", 1, 1)
			err := readReply([]byte(tt.body), tx)
			if tt.err != "" {
				if !errors.Is(err, handlers.ErrInvalidEffect) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrInvalidEffect with %q", err, tt.err)
				}
				if len(tx.Ops()) != 0 || tx.Result() != nil {
					t.Fatalf("a refused reply staged %v, result %q", tx.Ops(), tx.Result())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tx.Ops()) != len(tt.ops) {
				t.Fatalf("ops %+v, want %+v", tx.Ops(), tt.ops)
			}
			for i := range tt.ops {
				if tx.Ops()[i] != tt.ops[i] {
					t.Errorf("op %d: %+v, want %+v", i, tx.Ops()[i], tt.ops[i])
				}
			}
			if string(tx.Result()) != tt.result {
				t.Errorf("result %q, want %q", tx.Result(), tt.result)
			}
		})
	}
}

func TestEncodeValue(t *testing.T) {
	for in, want := range map[string]string{
		"plain-id_1.2": "plain-id_1.2",
		"a b":          "a%20b",
		`q"uote`:       "q%22uote",
		"100%":         "100%25",
		"line\r\nX: y": "line%0D%0AX:%20y",
		"café":         "caf%C3%A9",
		"":             "",
	} {
		if got := encodeValue(in); got != want {
			t.Errorf("encodeValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// endpoint starts a server answering with f and returns a handler on it.
func endpoint(t *testing.T, o Options, f http.HandlerFunc) (*Handler, *Metrics) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	e, err := ParseEndpoint("inventory.*=" + srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	h, err := New(e, o, m)
	if err != nil {
		t.Fatal(err)
	}
	return h, m
}

var testEvent = handlers.Event{ID: "ev 1", Source: "warehouse", Type: "inventory.received", Subject: "sku-1",
	Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), DataContentType: "application/json", Key: "sku-1",
	Data:       []byte(`{"sku":"sku-1","quantity":5}`),
	Extensions: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Bad Name": "x"}}

// TestHandleRequest: the request is the CloudEvents binary mode with
// fleet's headers, and a 2xx's effects and result land on the Tx.
func TestHandleRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	o := DefaultOptions()
	o.AuthValue = "Bearer s3cret"
	h, m := endpoint(t, o, func(w http.ResponseWriter, r *http.Request) {
		got, body = r, must(io.ReadAll(r.Body))
		_, _ = io.WriteString(w, `{"effects":[{"op":"HINCRBY","key":"inventory:{sku-1}","field":"on_hand","delta":5}],"result":"stock 5"}`)
	})
	tx := handlers.NewTx("idem-key", 7, 2)
	if err := h.Handle(context.Background(), testEvent, tx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Ce-Specversion": "1.0", "Ce-Id": "ev%201", "Ce-Source": "warehouse", "Ce-Type": "inventory.received",
		"Ce-Subject": "sku-1", "Ce-Time": "2026-11-29T12:00:00Z", "Content-Type": "application/json",
		"Ce-Traceparent": testEvent.Extensions["traceparent"], "Traceparent": testEvent.Extensions["traceparent"],
		"Idempotency-Key": "idem-key", "Fleet-Fence": "7", "Fleet-Attempt": "2", "Fleet-Key": "sku-1",
		"Authorization": "Bearer s3cret",
	}
	for k, v := range want {
		if got.Header.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, got.Header.Get(k), v)
		}
	}
	if got.Method != http.MethodPost || got.URL.Path != "/events" || string(body) != string(testEvent.Data) {
		t.Errorf("%s %s %q", got.Method, got.URL.Path, body)
	}
	if got.Header.Get("Ce-Bad name") != "" || len(got.Header.Values("Ce-Bad Name")) != 0 {
		t.Errorf("an extension with a name CloudEvents does not allow was sent")
	}
	if len(tx.Ops()) != 1 || tx.Ops()[0].Delta != 5 || string(tx.Result()) != "stock 5" {
		t.Errorf("ops %+v, result %q", tx.Ops(), tx.Result())
	}
	if n := testutil.ToFloat64(m.requests.WithLabelValues(h.label, "2xx")); n != 1 {
		t.Errorf("requests 2xx = %v", n)
	}
}

// TestHandleOutcomes: each kind of response makes the run's outcome.
func TestHandleOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		kind    handlers.Kind
		after   time.Duration
		message string
	}{
		{name: "422 is permanent and names the body", status: 422, body: "quantity must be positive\n", kind: handlers.KindPermanent, message: "422 Unprocessable Entity: quantity must be positive"},
		{name: "404 is permanent", status: 404, kind: handlers.KindPermanent},
		{name: "a redirect is not followed", status: 307, header: map[string]string{"Location": "http://elsewhere.invalid/"}, kind: handlers.KindPermanent, message: "307"},
		{name: "429 with Retry-After", status: 429, header: map[string]string{"Retry-After": "2"}, kind: handlers.KindRetryable, after: 2 * time.Second},
		{name: "503", status: 503, body: "overloaded", kind: handlers.KindRetryable, message: "overloaded"},
		{name: "408", status: 408, kind: handlers.KindRetryable},
		{name: "a 2xx off the format", status: 200, body: `{"effects":[{"op":"INCRBY","key":"k"}]}`, kind: handlers.KindInvalidEffect, message: "delta missing"},
		{name: "a 2xx over the size limit", status: 200, body: `{"result":"` + strings.Repeat("x", 100) + `"}`, kind: handlers.KindInvalidEffect, message: "over 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			o.MaxResponseBytes = 64
			h, _ := endpoint(t, o, func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			tx := handlers.NewTx("k", 1, 1)
			err := h.Handle(context.Background(), testEvent, tx)
			if handlers.KindOf(err) != tt.kind || err == nil {
				t.Fatalf("err = %v (%s), want kind %s", err, handlers.KindOf(err), tt.kind)
			}
			if got := handlers.RetryDelay(err); got != tt.after {
				t.Errorf("retry delay %v, want %v", got, tt.after)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("err = %v, want it to say %q", err, tt.message)
			}
			if len(tx.Ops()) != 0 {
				t.Errorf("a failed run staged %v", tx.Ops())
			}
		})
	}
}

// TestHandleCancelled: a request cut by its context (a lost lease, the
// handler timeout) is a retryable error that keeps the cause.
func TestHandleCancelled(t *testing.T) {
	release := make(chan struct{})
	h, m := endpoint(t, DefaultOptions(), func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := h.Handle(ctx, testEvent, handlers.NewTx("k", 1, 1))
	if !errors.Is(err, context.DeadlineExceeded) || handlers.KindOf(err) != handlers.KindRetryable {
		t.Fatalf("err = %v, want a retryable deadline", err)
	}
	if n := testutil.ToFloat64(m.requests.WithLabelValues(h.label, "error")); n != 1 {
		t.Errorf("requests error = %v", n)
	}
}

// TestRegisterKeepsGoHandlers: a pattern routes the types without a Go
// handler; one naming a Go handler's type exactly is refused.
func TestRegisterKeepsGoHandlers(t *testing.T) {
	r := handlers.NewRouter()
	goHandler := handlers.HandlerFunc(func(context.Context, handlers.Event, *handlers.Tx) error { return nil })
	if err := r.Register("inventory.audit", goHandler); err != nil {
		t.Fatal(err)
	}
	wild, _ := ParseEndpoint("inventory.*=http://127.0.0.1:1/")
	if err := Register(r, []Endpoint{wild}, DefaultOptions(), nil); err != nil {
		t.Fatal(err)
	}
	if h, _ := r.Lookup("inventory.audit"); h == nil || func() bool { _, isHTTP := h.(*Handler); return isHTTP }() {
		t.Errorf("inventory.audit is no longer the Go handler's")
	}
	if h, ok := r.Lookup("inventory.received"); !ok || h == nil {
		t.Errorf("inventory.received is not routed to the endpoint")
	}
	only := handlers.NewRouter()
	if err := only.Register("inventory.audit", goHandler); err != nil {
		t.Fatal(err)
	}
	exact, _ := ParseEndpoint("inventory.audit=http://127.0.0.1:1/")
	if err := Register(only, []Endpoint{exact}, DefaultOptions(), nil); err == nil || !strings.Contains(err.Error(), "has a Go handler, which keeps it") {
		t.Errorf("an exact pattern over a Go handler: %v", err)
	}
	// A Go domain's pattern keeps its types: an HTTP pattern within it, or
	// a type within it, is refused; a wider one routes only the rest.
	goWild := handlers.NewRouter()
	if err := goWild.RegisterPattern("ledger.*", goHandler); err != nil {
		t.Fatal(err)
	}
	for spec, refused := range map[string]bool{
		"ledger.account*=http://127.0.0.1:1/":       true,
		"ledger.account.opened=http://127.0.0.1:1/": true,
		"ledger.*=http://127.0.0.1:1/":              true, // the same pattern
		"led*=http://127.0.0.1:1/":                  false,
		"payment.*=http://127.0.0.1:1/":             false,
	} {
		e, _ := ParseEndpoint(spec)
		r := handlers.NewRouter()
		_ = r.RegisterPattern("ledger.*", goHandler)
		err := Register(r, []Endpoint{e}, DefaultOptions(), nil)
		if (err != nil) != refused {
			t.Errorf("%s: %v, refused %v", spec, err, refused)
		}
		if h, _ := r.Lookup("ledger.account.opened"); !refused && h == nil {
			t.Errorf("%s: ledger.account.opened lost its Go handler", spec)
		}
	}
}

// TestRoutesInAnyOrder: a type routed beside a pattern that covers it is
// accepted whichever comes first; the type's own route wins.
func TestRoutesInAnyOrder(t *testing.T) {
	wild, _ := ParseEndpoint("inv.*=http://127.0.0.1:1/wild")
	exact, _ := ParseEndpoint("inv.x=http://127.0.0.1:1/exact")
	for _, order := range [][]Endpoint{{wild, exact}, {exact, wild}} {
		r := handlers.NewRouter()
		if err := Register(r, order, DefaultOptions(), nil); err != nil {
			t.Fatalf("%s then %s: %v", order[0].Pattern, order[1].Pattern, err)
		}
		if h, _ := r.Lookup("inv.x"); h.(*Handler).url != "http://127.0.0.1:1/exact" {
			t.Errorf("inv.x goes to %s", h.(*Handler).url)
		}
	}
}

// TestOptionsRefused: settings that cannot work fail at start, without
// repeating the credential.
func TestOptionsRefused(t *testing.T) {
	e, _ := ParseEndpoint("a=http://127.0.0.1:1/")
	for name, o := range map[string]Options{
		"a header name with spaces":   {MaxConns: 1, MaxResponseBytes: 1, AuthHeader: "X Api Key", AuthValue: "k"},
		"a header name with a colon":  {MaxConns: 1, MaxResponseBytes: 1, AuthHeader: "X-Api-Key:", AuthValue: "k"},
		"a credential with a newline": {MaxConns: 1, MaxResponseBytes: 1, AuthHeader: "Authorization", AuthValue: "Bearer abc\ndef"},
		"no connections":              {MaxConns: 0, MaxResponseBytes: 1},
		"a response limit past 1 GiB": {MaxConns: 1, MaxResponseBytes: 1<<63 - 1},
	} {
		if _, err := New(e, o, nil); err == nil || strings.Contains(err.Error(), "abc") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestRequestHeadersAsTheBindingWants: the content type goes as it is (with
// its parameters), an unparsable one not at all; Fleet-Key is the
// aggregate, the id when there is no message key.
func TestRequestHeadersAsTheBindingWants(t *testing.T) {
	tx := handlers.NewTx("k", 1, 1)
	for _, tt := range []struct {
		ev               handlers.Event
		contentType, key string
	}{
		{handlers.Event{ID: "1", Key: "sku 1", DataContentType: "application/json; charset=utf-8"}, "application/json; charset=utf-8", "sku%201"},
		{handlers.Event{ID: "no-key", DataContentType: `multipart/mixed; boundary="a b"`}, `multipart/mixed; boundary="a b"`, "no-key"},
		{handlers.Event{ID: "2", Key: "k", DataContentType: "not a media type"}, "", "k"},
		{handlers.Event{ID: "3", Key: "k", DataContentType: "text/plain; x=\"é\""}, "", "k"},
	} {
		req, err := newRequest(context.Background(), "http://h/", tt.ev, tx)
		if err != nil {
			t.Fatal(err)
		}
		if got := req.Header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("%q: Content-Type %q, want %q", tt.ev.DataContentType, got, tt.contentType)
		}
		if got := req.Header.Get(HeaderKey); got != tt.key {
			t.Errorf("%q/%q: Fleet-Key %q, want %q", tt.ev.Key, tt.ev.ID, got, tt.key)
		}
	}
}

// TestErrorHidesEchoedCredential: an endpoint that echoes the request in its
// error body does not put the credential in the dead letter.
func TestErrorHidesEchoedCredential(t *testing.T) {
	o := DefaultOptions()
	o.AuthValue = "Bearer s3cret-token"
	h, _ := endpoint(t, o, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		_, _ = io.WriteString(w, "bad request; you sent Authorization: "+r.Header.Get("Authorization")+" and token s3cret-token")
	})
	err := h.Handle(context.Background(), testEvent, handlers.NewTx("k", 1, 1))
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "[credential]") {
		t.Fatalf("err = %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
