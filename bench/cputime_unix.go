//go:build unix

package bench

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used, user and system; on a
// shared machine, CPU per transfer moves less with the neighbours' load
// than transfers per second do.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
