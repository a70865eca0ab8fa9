package demo

import "testing"

// TestDemoListensOnLoopbackOnly: the demo signs anyone in, so it refuses
// an address others could reach.
func TestDemoListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "[::1]:0", "localhost:8080"} {
		if err := LoopbackOnly(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, addr := range []string{"0.0.0.0:8080", ":8080", "10.0.0.5:8080", "bank.example:8080", "127.0.0.1"} {
		if err := LoopbackOnly(addr); err == nil {
			t.Errorf("%s: accepted", addr)
		}
	}
}
