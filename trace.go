package banksync

import "context"

// HeaderTraceParent is the Kafka record header that carries the W3C
// traceparent of the request that wrote a ledger entry, when core traces
// (docs/events.md).
const HeaderTraceParent = "traceparent"

type entryTracesKey struct{}

// WithEntryTraces returns ctx carrying the traceparents of ledger entries
// by position, for the publisher to put in their records.
func WithEntryTraces(ctx context.Context, traces map[int64]string) context.Context {
	if len(traces) == 0 {
		return ctx
	}
	return context.WithValue(ctx, entryTracesKey{}, traces)
}

// EntryTraceParent is the traceparent ctx carries for the entry at
// position, or "".
func EntryTraceParent(ctx context.Context, position int64) string {
	traces, _ := ctx.Value(entryTracesKey{}).(map[int64]string)
	return traces[position]
}
