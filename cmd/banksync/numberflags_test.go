package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// TestNumberFlags: a number flag takes what parses and lies in its range,
// from the command line and from its variable alike, and refuses the rest
// saying what it takes; a bool flag takes only true or false.
func TestNumberFlags(t *testing.T) {
	const (
		lanesWant   = "want a whole number, from 1 to 10000"
		amountWant  = "want a whole number, at least 1"
		skewWant    = "want a duration such as 10s, from -24h to 24h"
		rateWant    = "want a number, from 0 to 1000000"
		seedWant    = "want a whole number"
		defaultWant = "want a whole number, at least 0"
	)
	for _, c := range []struct {
		flag, value string
		want        string // the value read, or the error
	}{
		{"lanes", "1", "1"},
		{"lanes", "10000", "10000"},
		{"lanes", "0x10", "16"},
		{"lanes", "1_000", "1000"},
		{"lanes", "0", lanesWant},
		{"lanes", "10001", lanesWant},
		{"lanes", "-1", lanesWant},
		{"lanes", "", lanesWant},
		{"lanes", " 5", lanesWant},
		{"lanes", "5.0", lanesWant},
		{"lanes", "1e3", lanesWant},
		{"lanes", "99999999999999999999", lanesWant},
		{"amount", "9223372036854775807", "9223372036854775807"},
		{"amount", "9223372036854775808", amountWant},
		{"amount", "0", amountWant},
		{"seed", "-9223372036854775808", "-9223372036854775808"},
		{"seed", "x", seedWant},
		{"count", "0", "0"},
		{"count", "-1", defaultWant},
		{"rate", "0", "0"},
		{"rate", "0.5", "0.5"},
		{"rate", "1e6", "1000000"},
		{"rate", "1000000.5", rateWant},
		{"rate", "-0.1", rateWant},
		{"rate", "NaN", rateWant},
		{"rate", "+Inf", rateWant},
		{"rate", "1e309", rateWant},
		{"skew", "-24h", "-24h"},
		{"skew", "1m30s", "1m30s"},
		{"skew", "90m", "1h30m"},
		{"skew", "5", skewWant},
		{"skew", "24h1ns", skewWant},
		{"skew", "10 s", skewWant},
		{"on", "true", "true"},
		{"on", "0", "false"},
		{"on", "yes", "want true or false"},
	} {
		for _, how := range []string{"env", "flag"} {
			t.Run(how+" "+c.flag+"="+c.value, func(t *testing.T) {
				f := testFlags()
				args := []string{"-" + c.flag + "=" + c.value}
				if how == "env" {
					args = nil
					t.Setenv(f.env[c.flag], c.value)
				}
				err := f.parse(args)
				if !strings.HasPrefix(c.want, "want ") {
					if got := f.Lookup(c.flag).Value.String(); err != nil || got != c.want {
						t.Fatalf("parse: %v, -%s = %s; want %s", err, c.flag, got, c.want)
					}
					return
				}
				// The error names the variable or the flag, the value
				// and what it takes, and is a usage error (exit status 2).
				want := fmt.Sprintf("%s=%q: %s (see banksync test -h)", f.env[c.flag], c.value, c.want)
				if how == "flag" {
					want = fmt.Sprintf("invalid value %q for flag -%s: %s (see banksync test -h)", c.value, c.flag, c.want)
					if c.flag == "on" {
						want = fmt.Sprintf("invalid boolean value %q for -%s: %s (see banksync test -h)", c.value, c.flag, c.want)
					}
				}
				if err == nil || !errors.As(err, new(usageError)) || err.Error() != want {
					t.Fatalf("error %v, want the usage error %q", err, want)
				}
			})
		}
	}
}

// testFlags has a number flag of each kind, with and without a range, and
// a bool flag.
func testFlags() *flags {
	var (
		lanes, count int
		amount, seed int64
		rate         float64
		skew         time.Duration
		on           bool
	)
	f := newFlags("test", "Tests.")
	f.Int(&lanes, "lanes", "BANKSYNC_TEST_LANES", 100, "lanes").within(1, 10_000)
	f.Int(&count, "count", "BANKSYNC_TEST_COUNT", 3, "a count")
	f.Int64(&amount, "amount", "BANKSYNC_TEST_AMOUNT", 1, "an amount").within(1, math.MaxInt64)
	f.Int64(&seed, "seed", "BANKSYNC_TEST_SEED", 1, "a seed").within(math.MinInt64, math.MaxInt64)
	f.Float64(&rate, "rate", "BANKSYNC_TEST_RATE", 5, "a rate").within(0, 1_000_000)
	f.Duration(&skew, "skew", "BANKSYNC_TEST_SKEW", 0, "a skew").within(-24*time.Hour, 24*time.Hour)
	f.Bool(&on, "on", "BANKSYNC_TEST_ON", false, "a switch")
	return f
}

// TestUsageListsRanges: -h says the range each number flag takes, beside
// its default and variable.
func TestUsageListsRanges(t *testing.T) {
	f := testFlags()
	var out bytes.Buffer
	f.SetOutput(&out)
	f.Usage()
	for _, want := range []string{
		"  -lanes  [BANKSYNC_TEST_LANES]\n    \tlanes (default \"100\"; a whole number, from 1 to 10000)\n",
		"  -count  [BANKSYNC_TEST_COUNT]\n    \ta count (default \"3\"; a whole number, at least 0)\n",
		"  -rate  [BANKSYNC_TEST_RATE]\n    \ta rate (default \"5\"; a number, from 0 to 1000000)\n",
		"  -skew  [BANKSYNC_TEST_SKEW]\n    \ta skew (default \"0s\"; a duration such as 10s, from -24h to 24h)\n",
		"  -on  [BANKSYNC_TEST_ON]\n    \ta switch (default \"false\")\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRangeExcludingDefaultPanics: a flag whose default lies outside its
// range is a bug in the command, stopped when the flag is defined.
func TestRangeExcludingDefaultPanics(t *testing.T) {
	for name, define := range map[string]func(f *flags){
		"below": func(f *flags) { var n int; f.Int(&n, "n", "BANKSYNC_TEST_N", 0, "").within(1, 10) },
		"above": func(f *flags) {
			var d time.Duration
			f.Duration(&d, "d", "BANKSYNC_TEST_D", time.Hour, "").within(time.Millisecond, time.Minute)
		},
		"empty": func(f *flags) { var r float64; f.Float64(&r, "r", "BANKSYNC_TEST_R", 5, "").within(10, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: within did not panic", name)
				}
			}()
			define(newFlags("test", ""))
		}()
	}
}
