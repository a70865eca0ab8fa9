// Package testkit holds what the tests of several packages share: waiting
// for a condition, and a log buffer safe for the goroutines that write it.
// Only tests import it, so the binary never links package testing.
package testkit

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// eventuallyPoll is how often Eventually and Within check their condition.
const eventuallyPoll = 10 * time.Millisecond

// Eventually waits up to within for cond to hold, checking it every 10 ms
// and once more at the end; if it never does, it fails t with what, and
// the last error cond gave. cond returns nil once it holds.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	EventuallyEvery(t, within, eventuallyPoll, what, cond)
}

// EventuallyEvery is Eventually checking cond every interval instead, for
// a condition too costly to check every 10 ms: one that runs a program, or
// opens a database that the code under test is writing.
func EventuallyEvery(t testing.TB, within, interval time.Duration, what string, cond func() error) {
	t.Helper()
	if err := WithinEvery(within, interval, cond); err != nil {
		t.Fatalf("%s: not so after %s: %v", what, within, err)
	}
}

// Within is Eventually without a test: it returns cond's last error if cond
// did not hold within the bound, for callers that fail in their own words
// or wait in a goroutine.
func Within(within time.Duration, cond func() error) error {
	return WithinEvery(within, eventuallyPoll, cond)
}

// WithinEvery is Within checking cond every interval, as EventuallyEvery
// does.
func WithinEvery(within, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// SyncBuffer collects what several goroutines write, a server's log most
// often.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// JSONLines decodes the JSON lines written so far (a JSON log), failing t
// on a line that is not JSON.
func (b *SyncBuffer) JSONLines(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	text := bytes.TrimSpace([]byte(b.String()))
	if len(text) == 0 {
		return nil
	}
	for _, line := range bytes.Split(text, []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}
