//go:build !chaos

package main

// chaosFlags adds nothing to the binary a bank deploys: see chaosSwitches.
func (f *flags) chaosFlags() func() (chaosSwitches, error) {
	return func() (chaosSwitches, error) { return chaosSwitches{}, nil }
}
