package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	bhttp "banksync/http"
)

// The ranges of the number settings. The least is what still works; each
// most is far past any real setting, so that a slip (a zero too many, a
// unit left out) stops the start instead of starting something that
// cannot work.
const (
	waitMin          = time.Millisecond
	pendingWaitMax   = time.Hour      // a transfer is pending at most its deadline + grace + a reconcile interval (P2): an hour of each is past any customer's patience
	runDurationMax   = 24 * time.Hour // of a benchmark or chaos run
	tokenTTLMax      = 30 * 24 * time.Hour
	clockSkewMax     = 24 * time.Hour
	partitionsMax    = 10_000 // of one topic; Kafka's own guidance is a few thousand per broker
	lanesMax         = 10_000 // a goroutine and a queue each
	ratePerSecondMax = 1_000_000
	clientsMax       = 10_000 // a connection each
	accountsMax      = 10_000_000
	depositsMax      = 1_000_000_000
	prefillRowsMax   = 1_000_000_000
	chaosChannelsMax = 64 // channel instances in one process
	customersMax     = 10_000
)

// flags is a FlagSet whose every flag also reads a BANKSYNC_* variable; the
// command line wins over the environment. A number outside its flag's range
// is refused like one that does not parse, naming what is wanted.
type flags struct {
	*flag.FlagSet
	env map[string]string // flag name -> variable
}

// newFlags returns a command's flags; -h prints their usage to stdout, as
// asked for, and a flag's error is returned, not printed (see parse).
func newFlags(name, summary string) *flags {
	f := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}}
	f.SetOutput(os.Stdout)
	f.Usage = func() {
		fmt.Fprintf(f.Output(), "Usage: banksync %s [flags]\n\n%s\n\nFlags (environment variable in brackets):\n", name, summary)
		f.VisitAll(func(fl *flag.Flag) {
			accepts := ""
			if r, ok := fl.Value.(ranged); ok {
				accepts = "; " + r.accepts()
			}
			fmt.Fprintf(f.Output(), "  -%s  [%s]\n    \t%s (default %q%s)\n", fl.Name, f.env[fl.Name], fl.Usage, fl.DefValue, accepts)
		})
	}
	return f
}

// usageError is a command called wrong: a flag, variable, argument or
// subcommand it does not know, or a value it refuses. main exits with
// status 2 on it, as the flag package does, and with 1 on a failure once
// the command has started.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

func (f *flags) String(p *string, name, env, def, usage string) {
	f.env[name] = env
	f.StringVar(p, name, def, usage)
}

// Int, Int64, Float64 and Duration define a number flag taking 0 and
// above; its within sets the range it takes instead.
func (f *flags) Int(p *int, name, env string, def int, usage string) *number[int] {
	return defineNumber(f, p, name, env, def, usage, "a whole number", parseInt)
}

func (f *flags) Int64(p *int64, name, env string, def int64, usage string) *number[int64] {
	return defineNumber(f, p, name, env, def, usage, "a whole number", parseInt64)
}

func (f *flags) Float64(p *float64, name, env string, def float64, usage string) *number[float64] {
	return defineNumber(f, p, name, env, def, usage, "a number", func(s string) (float64, error) {
		return strconv.ParseFloat(s, 64)
	})
}

func (f *flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) *number[time.Duration] {
	return defineNumber(f, p, name, env, def, usage, "a duration such as 10s", time.ParseDuration)
}

func (f *flags) Bool(p *bool, name, env string, def bool, usage string) {
	f.env[name] = env
	*p = def
	f.Var(boolValue{p}, name, usage)
}

// parse applies the environment, then the command line. -h wins over a bad
// variable, so the usage is there when it is needed most; every other error
// is a usageError, on one line.
func (f *flags) parse(args []string) error {
	var bad []string
	f.VisitAll(func(fl *flag.Flag) {
		if v, ok := os.LookupEnv(f.env[fl.Name]); ok {
			if err := fl.Value.Set(v); err != nil {
				bad = append(bad, fmt.Sprintf("%s=%q: %v", f.env[fl.Name], v, err))
			}
		}
	})
	help := f.Output()
	f.SetOutput(io.Discard) // the flag package would print the error and the usage to it
	err := f.Parse(args)
	f.SetOutput(help)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.Usage()
		return err
	case len(bad) > 0:
		return f.refuse(strings.Join(bad, "; "))
	case err != nil:
		return f.refuse(err.Error())
	case f.NArg() > 0:
		return f.refuse(fmt.Sprintf("unexpected arguments: %q", f.Args()))
	}
	return nil
}

// refuse is the usageError of msg, pointing at the usage.
func (f *flags) refuse(msg string) error {
	return usagef("%s (see banksync %s -h)", msg, f.Name())
}

// numberKind is what a number flag may hold.
type numberKind interface {
	int | int64 | float64 | time.Duration
}

// number is a number flag's value. It refuses what does not parse and what
// lies outside [min, max] alike, saying what it takes: a negative rate or
// lane count is a mistake to stop at start, not a setting to run with.
type number[T numberKind] struct {
	p        *T
	min, max T
	kind     string // "a whole number", …
	parse    func(string) (T, error)
}

// ranged is a flag value that says what it takes, for the usage.
type ranged interface{ accepts() string }

func defineNumber[T numberKind](f *flags, p *T, name, env string, def T, usage, kind string, parse func(string) (T, error)) *number[T] {
	f.env[name] = env
	*p = def
	_, largest := bounds[T]()
	n := &number[T]{p: p, kind: kind, parse: parse, max: largest}
	f.Var(n, name, usage)
	return n
}

// within sets the range n takes, both ends included. A default outside it
// is a bug in the command, stopped before it can run.
func (n *number[T]) within(min, max T) *number[T] {
	if *n.p < min || *n.p > max || min > max {
		panic(fmt.Sprintf("flag default %v is outside its range %v to %v", *n.p, min, max))
	}
	n.min, n.max = min, max
	return n
}

func (n *number[T]) Set(s string) error {
	v, err := n.parse(s)
	if err != nil || isNaN(v) || v < n.min || v > n.max {
		return errors.New("want " + n.accepts())
	}
	*n.p = v
	return nil
}

func (n *number[T]) String() string {
	if n == nil || n.p == nil {
		return ""
	}
	return format(*n.p)
}

func (n *number[T]) accepts() string {
	smallest, largest := bounds[T]()
	switch {
	case n.min == smallest && n.max == largest:
		return n.kind
	case n.max == largest:
		return fmt.Sprintf("%s, at least %s", n.kind, format(n.min))
	}
	return fmt.Sprintf("%s, from %s to %s", n.kind, format(n.min), format(n.max))
}

// parseInt and parseInt64 read a whole number as the flag package does:
// decimal, or 0x…, 0o…, 0b…, with _ between digits.
func parseInt(s string) (int, error) {
	v, err := strconv.ParseInt(s, 0, strconv.IntSize)
	return int(v), err
}

func parseInt64(s string) (int64, error) { return strconv.ParseInt(s, 0, 64) }

// bounds are T's ends: a range up to one has no end there but the type's.
func bounds[T numberKind]() (lo, hi T) {
	switch p := any(&lo).(type) {
	case *int:
		*p, *any(&hi).(*int) = math.MinInt, math.MaxInt
	case *int64:
		*p, *any(&hi).(*int64) = math.MinInt64, math.MaxInt64
	case *float64:
		*p, *any(&hi).(*float64) = -math.MaxFloat64, math.MaxFloat64
	case *time.Duration:
		*p, *any(&hi).(*time.Duration) = math.MinInt64, math.MaxInt64
	}
	return lo, hi
}

func isNaN[T numberKind](v T) bool {
	f, ok := any(v).(float64)
	return ok && math.IsNaN(f)
}

// format writes v as a person would type it: 1000000, not 1e+06; 1h, not
// 1h0m0s.
func format[T numberKind](v T) string {
	switch v := any(v).(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Duration:
		s := v.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	return fmt.Sprint(v)
}

// boolValue is a bool flag's value: --name alone sets it.
type boolValue struct{ p *bool }

func (b boolValue) IsBoolFlag() bool { return true }

func (b boolValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*b.p = v
	return nil
}

func (b boolValue) String() string {
	if b.p == nil {
		return "false"
	}
	return strconv.FormatBool(*b.p)
}

// logFlags adds --log-format (format by default) and --log-level; after
// parse, the function it returns builds the logger they name.
func (f *flags) logFlags(format string) func() (*slog.Logger, error) {
	var level string
	f.String(&format, "log-format", "BANKSYNC_LOG_FORMAT", format, "log format: json or text")
	f.String(&level, "log-level", "BANKSYNC_LOG_LEVEL", "info", "least severe level logged: debug, info, warn or error")
	return func() (*slog.Logger, error) { return newLogger(format, level) }
}

// newLogger returns a JSON logger for services or a text logger for humans,
// logging level and above, with each request's attributes on its lines.
func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level must be debug, info, warn or error, not %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(bhttp.LogHandler(slog.NewJSONHandler(os.Stderr, opts))), nil
	case "text":
		return slog.New(bhttp.LogHandler(slog.NewTextHandler(os.Stderr, opts))), nil
	}
	return nil, fmt.Errorf("log format must be json or text, not %q", format)
}

func parseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
