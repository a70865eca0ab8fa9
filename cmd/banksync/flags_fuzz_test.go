package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseBrokers feeds --kafka values: every broker parseBrokers returns
// is non-empty, trimmed and free of commas, and parsing its own list again
// gives the same list.
func FuzzParseBrokers(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:9092",
		"kafka-1:9092, kafka-2:9092 ,kafka-3:9092",
		" , ,",
		"",
		"\u00a0kafka:9092\u2003,\tkafka-2:9092\n",
		"[::1]:9092,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		brokers := parseBrokers(s)
		for _, b := range brokers {
			if b == "" || b != strings.TrimSpace(b) || strings.Contains(b, ",") {
				t.Fatalf("parseBrokers(%q) = %q: broker %q is empty, untrimmed or holds a comma", s, brokers, b)
			}
		}
		if again := parseBrokers(strings.Join(brokers, ",")); !slices.Equal(again, brokers) {
			t.Fatalf("parseBrokers(%q) = %q, but parsing that again gives %q", s, brokers, again)
		}
	})
}

// FuzzFlags feeds a subcommand's flag parser any command line (args, split
// at NUL as no argument can hold one) and any value of the environment
// variable of one of its flags (env selects which). parse must never panic,
// must leave no argument unread when it succeeds, and with no arguments
// must take the variable's value; its errors are usage errors, and no
// number it takes lies outside its range.
func FuzzFlags(f *testing.F) {
	for _, seed := range []struct {
		args string
		env  uint8
		val  string
	}{
		{"--name\x00core\x00-n=3\x00-big\x00-9223372036854775808\x00-wait=1m30s\x00-v", 0, "from-env"},
		{"", 1, "0x10"},
		{"", 2, "9223372036854775808"},
		{"", 3, "1e3s"},
		{"", 4, "maybe"},
		{"-h", 0, ""},
		{"-help\x00x", 1, "1"},
		{"--\x00-n=1", 2, "-1"},
		{"-n\x00", 3, "-5m"},
		{"-v=false\x00extra", 4, "T"},
		{"---n=1", 0, "x"},
		{"-=1", 1, " 1"},
		{"-wait=9999999999h", 3, "2562047h47m16.854775807s"},
		{"-name\x00-n", 0, "\xff"},
	} {
		f.Add(seed.args, seed.env, seed.val)
	}
	f.Fuzz(func(t *testing.T, args string, env uint8, val string) {
		var (
			name string
			n    int
			big  int64
			wait time.Duration
			v    bool
		)
		fl := newFlags("fuzz", "Parses whatever it is given.")
		fl.SetOutput(io.Discard)
		fl.String(&name, "name", "BANKSYNC_FUZZ_NAME", "default", "a string")
		fl.Int(&n, "n", "BANKSYNC_FUZZ_N", 1, "an int")
		fl.Int64(&big, "big", "BANKSYNC_FUZZ_BIG", 2, "an int64")
		fl.Duration(&wait, "wait", "BANKSYNC_FUZZ_WAIT", time.Second, "a duration")
		fl.Bool(&v, "v", "BANKSYNC_FUZZ_V", false, "a bool")
		vars := []string{"BANKSYNC_FUZZ_NAME", "BANKSYNC_FUZZ_N", "BANKSYNC_FUZZ_BIG", "BANKSYNC_FUZZ_WAIT", "BANKSYNC_FUZZ_V"}
		if strings.ContainsRune(val, 0) {
			return // no environment variable can hold a NUL
		}
		variable := vars[int(env)%len(vars)]
		t.Setenv(variable, val)

		var argv []string
		if args != "" {
			argv = strings.Split(args, "\x00")
		}
		err := fl.parse(argv)
		if err == nil && fl.NArg() > 0 {
			t.Fatalf("parse(%q) succeeded with %q unread", argv, fl.Args())
		}
		if err != nil && !errors.Is(err, flag.ErrHelp) && !errors.As(err, new(usageError)) {
			t.Fatalf("parse(%q) = %v, want a usage error (exit status 2)", argv, err)
		}
		if err == nil && (n < 0 || big < 0 || wait < 0) {
			t.Fatalf("parse(%q) with %s=%q took -n %d, -big %d, -wait %v: below the range (at least 0)", argv, variable, val, n, big, wait)
		}
		if len(argv) == 0 && err == nil && variable == "BANKSYNC_FUZZ_NAME" && name != val {
			t.Fatalf("%s=%q gave -name %q", variable, val, name)
		}
	})
}
