// Package deployed_test runs the chaos workload and checker against the
// shape a bank deploys: separate banksync processes on PostgreSQL and a
// three-node Apache Kafka cluster, faulted from outside (SIGKILL, SIGSTOP,
// broker and controller kills, database connections cut and refused, a
// PostgreSQL restart, a proxy between each replica and core, clock skew).
//
// A short pass runs with the tests. A longer one, over several seeds
// (scripts/chaos-deployed wraps this):
//
//	BANKSYNC_DEPLOYED_CHAOS_DURATION=10m BANKSYNC_DEPLOYED_CHAOS_SEEDS=1,2,3 \
//	  go test -run TestDeployedShapeKeepsThePromises -timeout 60m ./chaos/deployed/
package deployed_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"banksync/chaos"
)

// shortRun is the pass the tests make: long enough for every fault kind
// to come at least once (the run caps each kind's interval at a third of
// its length).
const shortRun = 75 * time.Second

// TestDeployedShapeKeepsThePromises runs the workload against the
// deployed shape with every fault kind, and checks every promise.
func TestDeployedShapeKeepsThePromises(t *testing.T) {
	d, seeds := runLength(t)
	for _, seed := range seeds {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := newRig(t, rigConfig{seed: seed})
			rep := r.run(seed, d, r.faults(), true)
			for _, f := range r.faults() {
				if rep.Faults[f.Name] == 0 {
					t.Errorf("no %s fault was injected: the run proved less than it claims", f.Name)
				}
				if n := rep.Faults[f.Name+"_failed"]; n > 0 {
					t.Errorf("%d %s faults could not be injected:\n%s", n, f.Name, r.faultErrors(f.Name))
				}
			}
			if rep.Faults["finale"] == 0 {
				t.Errorf("the finale (every replica killed while its history writes hang) was not injected")
			}
			if !rep.OK() {
				t.Errorf("seed %d broke a promise: %v\nlogs: %s\nreplay: BANKSYNC_DEPLOYED_CHAOS_SEEDS=%d BANKSYNC_DEPLOYED_CHAOS_DURATION=%s go test -run TestDeployedShapeKeepsThePromises ./chaos/deployed/",
					seed, rep.Examples, r.dir, seed, d)
			}
		})
	}
}

// runLength is the run's length and seeds: the short pass, or what
// BANKSYNC_DEPLOYED_CHAOS_DURATION and BANKSYNC_DEPLOYED_CHAOS_SEEDS ask.
func runLength(t *testing.T) (time.Duration, []uint64) {
	d, seeds := shortRun, []uint64{1}
	if s := os.Getenv("BANKSYNC_DEPLOYED_CHAOS_DURATION"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("BANKSYNC_DEPLOYED_CHAOS_DURATION: %v", err)
		}
	}
	if s := os.Getenv("BANKSYNC_DEPLOYED_CHAOS_SEEDS"); s != "" {
		seeds = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("BANKSYNC_DEPLOYED_CHAOS_SEEDS: %v", err)
			}
			seeds = append(seeds, n)
		}
	}
	return d, seeds
}

// The checker can fail here too: with a protection switched off in every
// process, the deployed run reports the promise it keeps broken.
func TestDeployedCheckerCatchesABrokenProtection(t *testing.T) {
	for _, tc := range []struct {
		unsafe  string
		promise string
		faults  func(r *rig) []chaos.DeployedFault
		finale  bool
	}{
		// Requests held past their deadline reach core, which (its clock
		// behind) executes them, after the channel failed them by its own
		// clock.
		{"no-fence", chaos.P3, func(r *rig) []chaos.DeployedFault {
			return []chaos.DeployedFault{{Name: "request_delivered_late", Every: 4 * time.Second, Do: r.deliverLate}}
		}, false},
		// Offsets committed before apply: the replicas killed while their
		// history writes hang lose what they held.
		{"commit-before-apply", chaos.P4, func(*rig) []chaos.DeployedFault { return nil }, true},
	} {
		t.Run(tc.unsafe, func(t *testing.T) {
			// A short settle: the run is meant to fail, and waiting the
			// full bound for histories that will never catch up proves
			// nothing more.
			r := newRig(t, rigConfig{seed: 1, unsafe: tc.unsafe, settleMax: 20 * time.Second})
			rep := r.run(1, 20*time.Second, tc.faults(r), tc.finale)
			if rep.Violations[tc.promise] == 0 {
				t.Errorf("with %s the deployed run reported no %s violation: its checker cannot see it (logs: %s)", tc.unsafe, tc.promise, r.dir)
			}
		})
	}
}
