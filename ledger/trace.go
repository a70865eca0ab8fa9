package ledger

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"banksync"
	"banksync/internal/recent"
)

// traceParentsMax bounds how many entries' traceparents wait for the
// relay: past it the oldest are forgotten, and their records go out
// without one (tracing is best effort; the ledger is not).
const traceParentsMax = 65_536

// traceParents remembers, for entries not yet published, the W3C
// traceparent of the request that wrote them, so that the relay can put it
// in their Kafka records and a trace runs on into the consumer. Only
// requests that are traced leave one; entries published after a restart
// go without. The zero value is ready to use.
type traceParents struct {
	mu    sync.Mutex
	byPos *recent.Map[int64, string]
}

// put records ctx's trace for entries, if ctx is traced.
func (t *traceParents) put(ctx context.Context, entries []banksync.Entry) {
	if len(entries) == 0 || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	tp := carrier.Get(banksync.HeaderTraceParent)
	if tp == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byPos == nil {
		t.byPos = recent.New[int64, string](traceParentsMax)
	}
	for _, e := range entries {
		t.byPos.Put(e.Position, tp)
	}
}

// get returns the traceparents of entries, by position; forget, set,
// forgets them too.
func (t *traceParents) get(entries []banksync.Entry, forget bool) map[int64]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byPos == nil || t.byPos.Len() == 0 {
		return nil
	}
	out := make(map[int64]string)
	for _, e := range entries {
		if tp, ok := t.byPos.Get(e.Position); ok {
			out[e.Position] = tp
			if forget {
				t.byPos.Delete(e.Position)
			}
		}
	}
	return out
}

// TraceParents returns, by position, the traceparents of the traced
// requests that wrote entries: for the relay, to publish with them.
func (l *Ledger) TraceParents(entries []banksync.Entry) map[int64]string {
	return l.traces.get(entries, false)
}

// ForgetTraceParents forgets entries' traceparents once they are
// published.
func (l *Ledger) ForgetTraceParents(entries []banksync.Entry) {
	l.traces.get(entries, true)
}
