package main

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"banksync/node"
)

// tracingFlushTimeout bounds how long a stopping process sends the spans
// it still holds.
const tracingFlushTimeout = 5 * time.Second

// tracingFlags adds --otlp-endpoint; the function it returns starts
// tracing service's requests to that collector, and returns the provider
// (nil when no endpoint is set: tracing is off by default) and what flushes
// and stops it.
func (f *flags) tracingFlags() func(ctx context.Context, service string) (trace.TracerProvider, func(), error) {
	var endpoint string
	f.String(&endpoint, "otlp-endpoint", "BANKSYNC_OTLP_ENDPOINT", "", "OTLP/HTTP collector to send traces to, as http://collector:4318; unset, nothing is traced")
	return func(ctx context.Context, service string) (trace.TracerProvider, func(), error) {
		tp, shutdown, err := node.OTLPTracing(ctx, endpoint, service)
		if err != nil {
			return nil, nil, err
		}
		stop := func() {
			ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
			defer cancel()
			shutdown(ctx)
		}
		return tp, stop, nil
	}
}
