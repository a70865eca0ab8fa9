package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"banksync"
	"banksync/channel"
)

// Live stream timings.
const (
	// streamHeartbeat is how often an idle stream sends a comment, so
	// proxies and the browser see it alive.
	streamHeartbeat = 15 * time.Second
	// streamLifetime ends a stream after this long; the browser's
	// EventSource reconnects with Last-Event-ID and resumes with no gap.
	streamLifetime = 30 * time.Minute
	// streamWriteTimeout drops a client that does not take what is sent.
	streamWriteTimeout = 10 * time.Second
)

// stream serves GET /v1/accounts/{id}/stream: Server-Sent Events, one
// event "entry" per new history entry, its id the entry's seq and its data
// the entry as in a history page. It starts after the seq in the
// Last-Event-ID header (a reconnecting EventSource sends it), else after
// the query's after, else after what the history holds now; so a
// reconnect resumes with no entry missed and none twice.
func (s *ChannelServer) stream(w http.ResponseWriter, r *http.Request) {
	after, err := streamStart(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	account := r.PathValue("id")
	addLog(r.Context(), LogAccount, account)
	st, err := s.ch.OpenStream(r.Context(), customerOf(r), account, after)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	defer st.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	w.WriteHeader(http.StatusOK)
	send := func(format string, args ...any) error {
		if err := rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send(": stream of %s\n\n", account) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), streamLifetime)
	defer cancel()
	for {
		wait, stop := context.WithTimeout(ctx, streamHeartbeat)
		es, err := st.Next(wait)
		stop()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			if send(": heartbeat\n\n") != nil {
				return
			}
			continue
		case errors.Is(err, channel.ErrStreamsStopped):
			return // the client reconnects to another replica
		case err != nil:
			s.log.ErrorContext(r.Context(), "live stream failed", "account", account, "err", err)
			return
		}
		for _, e := range es {
			data, err := json.Marshal(e)
			if err != nil {
				return
			}
			end := s.tracePush(e)
			err = send("id: %d\nevent: entry\ndata: %s\n\n", e.Seq, data)
			end()
			if err != nil {
				return
			}
		}
	}
}

// streamStart reads where a stream starts: after the seq of Last-Event-ID,
// else of the query's after, else -1 (after what the history holds).
func streamStart(r *http.Request) (int64, error) {
	q := r.URL.Query()
	if len(q["after"]) > 1 || len(r.Header.Values("Last-Event-ID")) > 1 {
		return 0, banksync.Errorf(banksync.EINVALID, "after and Last-Event-ID may be given once each")
	}
	v, name := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if v == "" {
		v, name = q.Get("after"), "after"
	}
	if v == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, banksync.Errorf(banksync.EINVALID, "%s must be a seq, a whole number of 0 or more", name)
	}
	return n, nil
}

// tracePush starts the span of e's live push, in the trace e was applied
// within, if the channel traces and remembers it; it returns what ends it.
func (s *ChannelServer) tracePush(e banksync.Entry) func() {
	if s.tracer == nil {
		return func() {}
	}
	sc, ok := s.ch.TraceOf(e.AccountID, e.Seq)
	if !ok {
		return func() {}
	}
	_, span := s.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), sc), "banksync.channel.push",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("banksync.account", e.AccountID), attribute.Int64("banksync.seq", e.Seq)))
	return func() { span.End() }
}
