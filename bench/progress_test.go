package bench

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a buffer a run's goroutines may write while a test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProgressSaysWhatIsStillRunning: a step says it starts, then, while
// it runs, how far it got every interval; once ended it says no more.
func TestProgressSaysWhatIsStillRunning(t *testing.T) {
	var out lockedBuffer
	p := newProgress(&out, "bench test: ")
	p.interval = time.Millisecond
	end := p.step("opening 10 accounts", func() string { return "4 opened" })
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
	p.line("next")
	if got := out.String()[n:]; got != "bench test: next\n" {
		t.Errorf("after end, wrote %q, want only the next line", got)
	}
}

// TestProgressNilSaysNothing: without a writer, steps cost nothing and say
// nothing.
func TestProgressNilSaysNothing(t *testing.T) {
	var p *progress
	p.step("anything", nil)()
	newProgress(nil, "x: ").step("anything", nil)()
}

// TestCoreSaysWhatItSetsUp: bench core, in miniature, says it sets up each
// run (the baseline's too) before its results, and then what it measures
// and verifies.
func TestCoreSaysWhatItSetsUp(t *testing.T) {
	var out lockedBuffer
	results, err := Core(context.Background(), CoreConfig{DB: "sqlite", Clients: 2, Duration: 50 * time.Millisecond, Accounts: 20,
		Baseline: true, Out: &out, Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}
	got := out.String()
	prev := -1
	for _, w := range []string{
		"bench core: http group-commit: setting up a fresh sqlite database and core with 20 funded accounts\n",
		"bench core: http group-commit: measuring for 50ms with 2 clients\n",
		"bench core: http group-commit: verifying the ledger\n",
		"http group-commit  ",
		"bench core: in-process group-commit: setting up",
		"in-process group-commit  ",
		"bench core: http baseline (1 tx/request): setting up a fresh sqlite database and core with 20 funded accounts, one transaction each\n",
		"http baseline (1 tx/request)  ",
	} {
		i := strings.Index(got, w)
		if i < 0 {
			t.Fatalf("output lacks %q:\n%s", w, got)
		}
		if i < prev {
			t.Fatalf("%q comes before the line above it in the list, want after:\n%s", w, got)
		}
		prev = i
	}
}
