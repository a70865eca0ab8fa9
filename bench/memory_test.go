package bench

import (
	"runtime"
	"testing"
)

// TestMemoryPeakSeesAnAllocation: a phase that allocates 64 MiB and keeps
// it reports a heap peak at least that big, and a resident peak as big
// where the kernel lets the peak be reset.
func TestMemoryPeakSeesAnAllocation(t *testing.T) {
	m := startMemoryPeak()
	block := make([]byte, 64<<20)
	for i := range block {
		block[i] = byte(i)
	}
	heap, rss := m.end()
	runtime.KeepAlive(block)
	if heap < 64 {
		t.Errorf("heap peak %.0f MiB, want at least 64", heap)
	}
	if m.resetRSS && rss < 64 {
		t.Errorf("resident peak %.0f MiB, want at least 64", rss)
	}
	if again, _ := m.end(); again != heap {
		t.Errorf("a second end = %.0f MiB, want the same %.0f", again, heap)
	}
}
