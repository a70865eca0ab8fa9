package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressInterval is how often a step that is still running says how far
// it got: often enough that a person watching a run of minutes never
// wonders whether it hangs, seldom enough to stay readable.
const progressInterval = 3 * time.Second

// progress tells a person watching a run what it is doing, apart from the
// results: a line as each step starts, and every interval while it runs, a
// line with how far it got. The results say how fast; this says what is
// slow. A nil writer says nothing.
type progress struct {
	w        io.Writer
	prefix   string // what every line starts with, as "bench core: "
	interval time.Duration
	mu       sync.Mutex // one line at a time from a step and its ticker
}

func newProgress(w io.Writer, prefix string) *progress {
	return &progress{w: w, prefix: prefix, interval: progressInterval}
}

// step says what is starting and, until end is called, every interval
// what is still running, with howFar (if set) and the time it has taken.
// end returns once nothing more will be written for the step.
func (p *progress) step(what string, howFar func() string) (end func()) {
	if p == nil || p.w == nil {
		return func() {}
	}
	p.line(what)
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
				p.line(fmt.Sprintf("still %s%s (%.0f s)", what, far, time.Since(start).Seconds()))
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

func (p *progress) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s%s\n", p.prefix, s)
}
