package node

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// OTLPTracing returns a tracer provider that sends service's spans to the
// OTLP/HTTP collector at endpoint (as http://collector:4318; with no path,
// to its /v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT does), and what
// flushes and stops it. Tracing is off unless an endpoint is given: then
// it returns nil and a stop that does nothing.
func OTLPTracing(ctx context.Context, endpoint, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if endpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("--otlp-endpoint %q: want a URL such as http://collector:4318", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, nil, fmt.Errorf("trace exporter for %s: %w", endpoint, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))))
	return tp, tp.Shutdown, nil
}

// propagator is how traces cross processes: the W3C traceparent header, in
// HTTP requests and in Kafka records (docs/events.md).
var propagator = propagation.TraceContext{}

// traced wraps h in a server span per request, named by route, continuing
// a trace its caller sent; with no provider it returns h.
func traced(tp trace.TracerProvider, h http.Handler, route func(*http.Request) string) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, "", otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return route(r) }))
}

// tracedTransport sends a trace on with each request through rt; with no
// provider it returns rt.
func tracedTransport(tp trace.TracerProvider, rt http.RoundTripper) http.RoundTripper {
	if tp == nil {
		return rt
	}
	return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagator))
}

// tracer is tp's tracer for name, or nil when tracing is off.
func tracer(tp trace.TracerProvider, name string) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(name)
}
