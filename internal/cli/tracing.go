package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// flushTimeout bounds the export of the spans still buffered at exit.
const flushTimeout = 5 * time.Second

// startTracing returns the tracer provider of `fleet run --tracing`, and
// what flushes and stops it at exit. Off, it is nil (the engine then
// traces nothing) and no SDK is made. On, everything else comes from the
// standard OTEL_* variables, read by the OpenTelemetry SDK itself: the
// exporter (OTEL_TRACES_EXPORTER, default otlp; OTEL_EXPORTER_OTLP_PROTOCOL,
// _ENDPOINT, _HEADERS …), the sampler (OTEL_TRACES_SAMPLER, _ARG) and the
// resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES; service.name
// defaults to "fleet"). The engine is handed the provider, and reads the
// trace context of events with the W3C propagator itself; the one global
// set is the SDK's error handler, the only way it reports a failed export,
// so that those go to log (as warnings) rather than to a logger of its own.
func startTracing(ctx context.Context, log *slog.Logger, on bool, version string) (trace.TracerProvider, func() error, error) {
	if !on {
		return nil, func() error { return nil }, nil
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: span exporter (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*): %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("fleet"), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // after the default: OTEL_SERVICE_NAME wins
	)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, nil, fmt.Errorf("tracing: resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: flush spans: %w", err)
		}
		return nil
	}
	return tp, stop, nil
}
