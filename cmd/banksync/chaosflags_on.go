//go:build chaos

package main

import (
	"strings"
	"time"
)

// chaosFlags adds --chaos-clock-skew and --chaos-unsafe, in a binary built
// with -tags chaos only: the deployed chaos run's processes.
func (f *flags) chaosFlags() func() (chaosSwitches, error) {
	var skew time.Duration
	var unsafe string
	f.Duration(&skew, "chaos-clock-skew", "BANKSYNC_CHAOS_CLOCK_SKEW", 0, "chaos builds only: how far this process's clock is off real time").within(-clockSkewMax, clockSkewMax)
	f.String(&unsafe, "chaos-unsafe", "BANKSYNC_CHAOS_UNSAFE", "", "chaos builds only: a protection to switch off, no-fence or commit-before-apply")
	return func() (chaosSwitches, error) {
		sw := chaosSwitches{ClockSkew: skew}
		for _, name := range strings.Split(unsafe, ",") {
			switch strings.TrimSpace(name) {
			case "":
			case "no-fence":
				sw.NoFence = true
			case "commit-before-apply":
				sw.CommitBeforeApply = true
			default:
				return sw, usagef("--chaos-unsafe: %q is not no-fence or commit-before-apply", name)
			}
		}
		return sw, nil
	}
}
