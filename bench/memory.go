package bench

import (
	"bufio"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memorySamplePeriod is how often a memoryPeak reads the Go heap.
const memorySamplePeriod = 50 * time.Millisecond

// memoryPeak follows the process's memory through one phase: the peak of
// the Go heap's live and unswept objects, sampled, and the peak resident
// set as the kernel counts it (VmHWM, reset at the start where the kernel
// allows it). The benchmark runs core and the channel in one process, so
// the figures bound each of them.
type memoryPeak struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup
	heapPeak uint64
	resetRSS bool // VmHWM was reset at the start, so it is the phase's own
}

func startMemoryPeak() *memoryPeak {
	m := &memoryPeak{stop: make(chan struct{})}
	// Writing 5 to clear_refs resets the peak resident set (Linux ≥ 4.0).
	m.resetRSS = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value; v.Kind() == metrics.KindUint64 {
			m.heapPeak = max(m.heapPeak, v.Uint64())
		}
	}
	read()
	m.done.Go(func() {
		t := time.NewTicker(memorySamplePeriod)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				read()
				return
			case <-t.C:
				read()
			}
		}
	})
	return m
}

// end stops sampling and returns the peaks in MiB; rss is 0 where the
// kernel does not say, or where it could not be reset for the phase. It
// may be called more than once.
func (m *memoryPeak) end() (heapMiB, rssMiB float64) {
	m.stopOnce.Do(func() { close(m.stop) })
	m.done.Wait()
	if m.resetRSS {
		rssMiB = float64(vmHWM()) / (1 << 20)
	}
	return float64(m.heapPeak) / (1 << 20), rssMiB
}

// vmHWM is the process's peak resident set in bytes, from /proc; 0 if
// unreadable.
func vmHWM() uint64 { return vmHWMOf("/proc/self/status") }

// vmHWMOf is the peak resident set in bytes that a /proc/PID/status file
// gives; 0 if unreadable.
func vmHWMOf(status string) uint64 {
	f, err := os.Open(status)
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
