package main_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestBenchCoreSaysWhatItSetsUp: `banksync bench core` says on stderr that
// it sets up, before the results it prints on stdout, rather than sitting
// silent through its setup (52 s at the default sizes with the baseline).
func TestBenchCoreSaysWhatItSetsUp(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary, "bench", "core", "--duration", "50ms", "--accounts", "20", "--clients", "2")
	var both, stderr bytes.Buffer
	// One writer for both: the lines keep the order they were written in.
	cmd.Stdout, cmd.Stderr = &both, &both
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench core: %v\n%s", err, both.String())
	}
	cmd = exec.Command(binary, "bench", "core", "--duration", "50ms", "--accounts", "20", "--clients", "2", "--baseline=false")
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench core: %v\n%s", err, stderr.String())
	}
	out := both.String()
	setup := strings.Index(out, "bench core: http group-commit: setting up a fresh sqlite database and core with 20 funded accounts")
	result := strings.Index(out, "http group-commit   ")
	baseline := strings.Index(out, "bench core: http baseline (1 tx/request): setting up")
	if setup < 0 || result < 0 || baseline < 0 || setup > result || baseline < result {
		t.Errorf("want a setup line before the first result and one before the baseline's; got:\n%s", out)
	}
	// The progress is on stderr, the results alone on stdout.
	if strings.Contains(string(stdout), "setting up") || !strings.Contains(stderr.String(), "setting up") {
		t.Errorf("stdout:\n%s\nstderr:\n%s\nwant the setup lines on stderr only", stdout, stderr.String())
	}
}
