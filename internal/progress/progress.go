// Package progress tells a person watching a long run (a benchmark, a
// chaos run) what it is doing, apart from its results: a line as each step
// starts and, while it runs, one every few seconds with how far it got.
package progress

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// IntervalDefault is how often a step that is still running says how far
// it got: often enough that a person watching a run of minutes never
// wonders whether it hangs, seldom enough to stay readable.
const IntervalDefault = 3 * time.Second

// Progress writes what a run is doing. The results say how fast; this says
// what is slow. A nil Progress, or one without a writer, says nothing.
type Progress struct {
	w        io.Writer
	prefix   string // what every line starts with, as "bench core: "
	interval time.Duration
	mu       sync.Mutex // one line at a time from a step and its ticker
}

// New writes to w (nil: nowhere) lines that start with prefix, every
// IntervalDefault while a step runs.
func New(w io.Writer, prefix string) *Progress {
	return &Progress{w: w, prefix: prefix, interval: IntervalDefault}
}

// Step says what is starting and, until end is called, every interval
// what is still running, with howFar (if set) and the time it has taken.
// end returns once nothing more will be written for the step.
func (p *Progress) Step(what string, howFar func() string) (end func()) {
	if p == nil || p.w == nil {
		return func() {}
	}
	p.Line(what)
	start := time.Now()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(p.interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				far := ""
				if howFar != nil {
					far = ": " + howFar()
				}
				p.Line(fmt.Sprintf("still %s%s (%.0f s)", what, far, time.Since(start).Seconds()))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-stopped
		})
	}
}

// Line writes s as a line of its own.
func (p *Progress) Line(s string) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s%s\n", p.prefix, s)
}
