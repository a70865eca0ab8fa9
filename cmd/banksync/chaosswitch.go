package main

import "time"

// chaosSwitches are what the deployed chaos run sets in the processes it
// starts: a clock off by ClockSkew, and one protection switched off, so
// the run can show its checker sees the promise break. Only a binary built
// with -tags chaos has the flags that set them (chaosflags_on.go); the
// binary a bank deploys always has the zero value.
type chaosSwitches struct {
	ClockSkew         time.Duration
	NoFence           bool // the reconciler fails transfers by its own clock (P3)
	CommitBeforeApply bool // offsets are committed before the records are applied (P4)
}

// now is the process's clock: nil, the real one, unless skewed.
func (c chaosSwitches) now() func() time.Time {
	if c.ClockSkew == 0 {
		return nil
	}
	return func() time.Time { return time.Now().Add(c.ClockSkew) }
}
