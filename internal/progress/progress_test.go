package progress

import (
	"strings"
	"testing"
	"time"

	"banksync/internal/testkit"
)

// TestProgressSaysWhatIsStillRunning: a step says it starts, then, while
// it runs, how far it got every interval; once ended it says no more.
func TestProgressSaysWhatIsStillRunning(t *testing.T) {
	var out testkit.SyncBuffer
	p := New(&out, "bench test: ")
	p.interval = time.Millisecond
	end := p.Step("opening 10 accounts", func() string { return "4 opened" })
	for deadline := time.Now().Add(10 * time.Second); strings.Count(out.String(), "\n") < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("no progress lines while the step ran; got:\n%s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	end()
	end() // a second end is harmless
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if lines[0] != "bench test: opening 10 accounts" {
		t.Errorf("first line %q, want the step's start", lines[0])
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "bench test: still opening 10 accounts: 4 opened (") || !strings.HasSuffix(l, " s)") {
			t.Errorf("line %q, want how far the step got and its time", l)
		}
	}
	// After end returns nothing more is written: the ticker has stopped.
	n := len(out.String())
	p.Line("next")
	if got := out.String()[n:]; got != "bench test: next\n" {
		t.Errorf("after end, wrote %q, want only the next line", got)
	}
}

// TestProgressNilSaysNothing: without a writer, steps cost nothing and say
// nothing.
func TestProgressNilSaysNothing(t *testing.T) {
	var p *Progress
	p.Step("anything", nil)()
	New(nil, "x: ").Step("anything", nil)()
}
