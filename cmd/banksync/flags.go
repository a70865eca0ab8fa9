package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	bhttp "banksync/http"
)

// flags is a FlagSet whose every flag also reads a BANKSYNC_* variable; the
// command line wins over the environment.
type flags struct {
	*flag.FlagSet
	env map[string]string // flag name -> variable
}

func newFlags(name, summary string) *flags {
	f := &flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}}
	f.Usage = func() {
		fmt.Fprintf(f.Output(), "Usage: banksync %s [flags]\n\n%s\n\nFlags (environment variable in brackets):\n", name, summary)
		f.VisitAll(func(fl *flag.Flag) {
			fmt.Fprintf(f.Output(), "  -%s  [%s]\n    \t%s (default %q)\n", fl.Name, f.env[fl.Name], fl.Usage, fl.DefValue)
		})
	}
	return f
}

func (f *flags) String(p *string, name, env, def, usage string) {
	f.env[name] = env
	f.StringVar(p, name, def, usage)
}

func (f *flags) Int(p *int, name, env string, def int, usage string) {
	f.env[name] = env
	f.IntVar(p, name, def, usage)
}

func (f *flags) Int64(p *int64, name, env string, def int64, usage string) {
	f.env[name] = env
	f.Int64Var(p, name, def, usage)
}

func (f *flags) Float64(p *float64, name, env string, def float64, usage string) {
	f.env[name] = env
	f.Float64Var(p, name, def, usage)
}

func (f *flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	f.env[name] = env
	f.DurationVar(p, name, def, usage)
}

func (f *flags) Bool(p *bool, name, env string, def bool, usage string) {
	f.env[name] = env
	f.BoolVar(p, name, def, usage)
}

// parse applies the environment, then the command line.
func (f *flags) parse(args []string) error {
	var errs []string
	f.VisitAll(func(fl *flag.Flag) {
		if v, ok := os.LookupEnv(f.env[fl.Name]); ok {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", f.env[fl.Name], v, err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("bad environment: %s", strings.Join(errs, "; "))
	}
	if err := f.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", f.Args())
	}
	return nil
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
