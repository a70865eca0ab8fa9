package main_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// calledTimeout bounds one call that must end at once: -h, or a setting
// refused before anything starts.
const calledTimeout = 30 * time.Second

// call runs `banksync args…` with env added to an environment holding no
// other BANKSYNC_* variable, and returns what it printed and its exit status.
func call(t *testing.T, env []string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), calledTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	for _, kv := range cmd.Environ() {
		if !strings.HasPrefix(kv, "BANKSYNC_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("banksync %s did not end within %v: it started instead of answering", strings.Join(args, " "), calledTimeout)
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), status
}

// commandLine is a command's line in banksync's usage: "  banksync demo …".
var commandLine = regexp.MustCompile(`(?m)^  banksync (\w+) `)

// TestHelpExitsZero: -h and --help on every command and subcommand print
// its usage to stdout, print nothing to stderr and exit 0, even with a bad
// variable in the environment (the usage is what its user needs then).
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	type helpCase struct {
		args []string
		env  []string
		want string // stdout starts with it
	}
	cases := []helpCase{
		{[]string{"-h"}, nil, "banksync keeps"},
		{[]string{"--help"}, nil, "banksync keeps"},
		{[]string{"help"}, nil, "banksync keeps"},
		{[]string{"core", "-h"}, nil, "Usage: banksync core [flags]"},
		{[]string{"core", "--help"}, nil, "Usage: banksync core [flags]"},
		{[]string{"channel", "-h"}, nil, "Usage: banksync channel [flags]"},
		{[]string{"channel", "-h"}, []string{"BANKSYNC_DEADLINE=5"}, "Usage: banksync channel [flags]"},
		{[]string{"token", "-h"}, nil, "Usage: banksync token [flags]"},
		{[]string{"kafka", "--help"}, nil, "Usage: banksync kafka [flags]"},
		{[]string{"demo", "-h"}, nil, "Usage: banksync demo [flags]"},
		{[]string{"chaos", "-h"}, nil, "Usage: banksync chaos [flags]"},
		{[]string{"dlq", "-h"}, nil, "Usage: banksync dlq list|replay [flags]"},
		{[]string{"dlq", "--help"}, nil, "Usage: banksync dlq list|replay [flags]"},
		{[]string{"dlq", "list", "-h"}, nil, "Usage: banksync dlq list [flags]"},
		{[]string{"dlq", "replay", "--help"}, nil, "Usage: banksync dlq replay [flags]"},
		{[]string{"bench", "-h"}, nil, "Usage: banksync bench core|payday [flags]"},
		{[]string{"bench", "--help"}, nil, "Usage: banksync bench core|payday [flags]"},
		{[]string{"bench", "core", "-h"}, nil, "Usage: banksync bench core [flags]"},
		{[]string{"bench", "payday", "--help"}, nil, "Usage: banksync bench payday [flags]"},
		{[]string{"bench", "payday", "-h"}, []string{"BANKSYNC_BENCH_DEPOSITS=-1"}, "Usage: banksync bench payday [flags]"},
		{[]string{"help", "bench", "payday"}, nil, "Usage: banksync bench payday [flags]"},
	}
	// Every command banksync lists has its case.
	top, _, _ := call(t, nil, "-h")
	for _, m := range commandLine.FindAllStringSubmatch(top, -1) {
		if !slices.ContainsFunc(cases, func(c helpCase) bool { return c.args[0] == m[1] }) {
			t.Errorf("banksync %s -h has no case here", m[1])
		}
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, status := call(t, c.env, c.args...)
			if status != 0 || stderr != "" || !strings.HasPrefix(stdout, c.want) {
				t.Fatalf("exit status %d, stdout:\n%s\nstderr:\n%s\nwant status 0, nothing on stderr and stdout starting %q", status, stdout, stderr, c.want)
			}
			// Every flag is listed with its variable.
			if strings.Contains(stdout, "[]") {
				t.Errorf("a flag has no environment variable:\n%s", stdout)
			}
		})
	}
}

// TestCalledWrongExitsTwo: a bad value in a flag or a BANKSYNC_* variable,
// a number out of its range, an unknown flag, argument or subcommand is
// refused before anything starts, with exit status 2 and one line on stderr
// naming the setting, the value and what it takes.
func TestCalledWrongExitsTwo(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  []string
		args []string
		want string // the whole of stderr
	}{
		// Values that do not parse.
		{[]string{"BANKSYNC_DEADLINE=5"}, []string{"channel"},
			`banksync channel: BANKSYNC_DEADLINE="5": want a duration such as 10s, from 1ms to 1h (see banksync channel -h)`},
		{nil, []string{"channel", "--deadline", "5"},
			`banksync channel: invalid value "5" for flag -deadline: want a duration such as 10s, from 1ms to 1h (see banksync channel -h)`},
		{[]string{"BANKSYNC_LANES=ten"}, []string{"channel"},
			`banksync channel: BANKSYNC_LANES="ten": want a whole number, from 1 to 10000 (see banksync channel -h)`},
		{nil, []string{"core", "--partitions", "1.5"},
			`banksync core: invalid value "1.5" for flag -partitions: want a whole number, from 1 to 10000 (see banksync core -h)`},
		{[]string{"BANKSYNC_RATE_READS=NaN"}, []string{"channel"},
			`banksync channel: BANKSYNC_RATE_READS="NaN": want a number, from 0 to 1000000 (see banksync channel -h)`},
		{[]string{"BANKSYNC_DEMO_TRAFFIC=maybe"}, []string{"demo"},
			`banksync demo: BANKSYNC_DEMO_TRAFFIC="maybe": want true or false (see banksync demo -h)`},
		{nil, []string{"demo", "--traffic=maybe"},
			`banksync demo: invalid boolean value "maybe" for -traffic: want true or false (see banksync demo -h)`},
		{[]string{"BANKSYNC_DLQ_ALL=yes"}, []string{"dlq", "replay"},
			`banksync dlq: BANKSYNC_DLQ_ALL="yes": want true or false (see banksync dlq replay -h)`},

		// Values that parse but make no sense.
		{[]string{"BANKSYNC_RATE_TRANSFERS=-1"}, []string{"channel"},
			`banksync channel: BANKSYNC_RATE_TRANSFERS="-1": want a number, from 0 to 1000000 (see banksync channel -h)`},
		{nil, []string{"channel", "--rate-reads", "Inf"},
			`banksync channel: invalid value "Inf" for flag -rate-reads: want a number, from 0 to 1000000 (see banksync channel -h)`},
		{nil, []string{"demo", "--rate-transfers", "-1"},
			`banksync demo: invalid value "-1" for flag -rate-transfers: want a number, from 0 to 1000000 (see banksync demo -h)`},
		{[]string{"BANKSYNC_RATE_READS=-1"}, []string{"demo"},
			`banksync demo: BANKSYNC_RATE_READS="-1": want a number, from 0 to 1000000 (see banksync demo -h)`},
		{nil, []string{"channel", "--lanes", "0"},
			`banksync channel: invalid value "0" for flag -lanes: want a whole number, from 1 to 10000 (see banksync channel -h)`},
		{[]string{"BANKSYNC_RECONCILE_GRACE=0s"}, []string{"channel"},
			`banksync channel: BANKSYNC_RECONCILE_GRACE="0s": want a duration such as 10s, from 1ms to 1h (see banksync channel -h)`},
		{nil, []string{"channel", "--core-timeout", "1m"},
			`banksync channel: invalid value "1m" for flag -core-timeout: want a duration such as 10s, from 1ms to 30s (see banksync channel -h)`},
		{[]string{"BANKSYNC_AMOUNT_MAX=0"}, []string{"core"},
			`banksync core: BANKSYNC_AMOUNT_MAX="0": want a whole number, at least 1 (see banksync core -h)`},
		{nil, []string{"core", "--amount-max", "9223372036854775808"},
			`banksync core: invalid value "9223372036854775808" for flag -amount-max: want a whole number, at least 1 (see banksync core -h)`},
		{nil, []string{"kafka", "--partitions", "-3"},
			`banksync kafka: invalid value "-3" for flag -partitions: want a whole number, from 1 to 10000 (see banksync kafka -h)`},
		{nil, []string{"token", "--ttl", "-1h"},
			`banksync token: invalid value "-1h" for flag -ttl: want a duration such as 10s, from 1s to 720h (see banksync token -h)`},
		{nil, []string{"bench", "core", "--duration", "-3s"},
			`banksync bench: invalid value "-3s" for flag -duration: want a duration such as 10s, from 1ms to 24h (see banksync bench core -h)`},
		{[]string{"BANKSYNC_BENCH_ACCOUNTS=1"}, []string{"bench", "core"},
			`banksync bench: BANKSYNC_BENCH_ACCOUNTS="1": want a whole number, from 2 to 10000000 (see banksync bench core -h)`},
		{nil, []string{"bench", "payday", "--batch", "5000"},
			`banksync bench: invalid value "5000" for flag -batch: want a whole number, from 1 to 1000 (see banksync bench payday -h)`},
		{[]string{"BANKSYNC_BENCH_RATE=-10"}, []string{"bench", "payday"},
			`banksync bench: BANKSYNC_BENCH_RATE="-10": want a whole number, from 0 to 1000000 (see banksync bench payday -h)`},
		{nil, []string{"chaos", "--channels", "0"},
			`banksync chaos: invalid value "0" for flag -channels: want a whole number, from 1 to 64 (see banksync chaos -h)`},
		{[]string{"BANKSYNC_CHAOS_DURATION=-30s"}, []string{"chaos"},
			`banksync chaos: BANKSYNC_CHAOS_DURATION="-30s": want a duration such as 10s, from 1ms to 24h (see banksync chaos -h)`},
		// A bad variable is refused even when a flag overrides it, and
		// every bad variable is named at once.
		{[]string{"BANKSYNC_LANES=0", "BANKSYNC_DEADLINE=x"}, []string{"channel", "--lanes", "5"},
			`banksync channel: BANKSYNC_DEADLINE="x": want a duration such as 10s, from 1ms to 1h; BANKSYNC_LANES="0": want a whole number, from 1 to 10000 (see banksync channel -h)`},

		// Flags, arguments and subcommands it does not know.
		{nil, []string{"core", "--no-such-flag"},
			`banksync core: flag provided but not defined: -no-such-flag (see banksync core -h)`},
		{nil, []string{"core", "stray"},
			`banksync core: unexpected arguments: ["stray"] (see banksync core -h)`},
		{nil, []string{"bench"}, `banksync bench: want a subcommand, core or payday (see banksync bench -h)`},
		{nil, []string{"bench", "tps"}, `banksync bench: unknown subcommand "tps": want core or payday (see banksync bench -h)`},
		{nil, []string{"dlq"}, `banksync dlq: want a subcommand, list or replay (see banksync dlq -h)`},
		{nil, []string{"dlq", "purge"}, `banksync dlq: unknown subcommand "purge": want list or replay (see banksync dlq -h)`},
	} {
		t.Run(strings.Join(append(c.env, c.args...), " "), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, status := call(t, c.env, c.args...)
			if status != 2 || stderr != c.want+"\n" || stdout != "" {
				t.Fatalf("exit status %d, stdout %q, stderr:\n%s\nwant status 2, nothing on stdout, and on stderr:\n%s", status, stdout, stderr, c.want)
			}
		})
	}
}

// TestNoCommandExitsTwo: banksync alone or with a command it does not know
// prints its usage to stderr and exits 2.
func TestNoCommandExitsTwo(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"frobnicate"}, {"help", "frobnicate"}} {
		stdout, stderr, status := call(t, nil, args...)
		if status != 2 || stdout != "" || !strings.Contains(stderr, "Usage:\n  banksync demo") {
			t.Errorf("banksync %q: exit status %d, stdout %q, stderr:\n%s\nwant status 2 and the usage on stderr", args, status, stdout, stderr)
		}
	}
}
