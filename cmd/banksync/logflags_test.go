package main

import (
	"context"
	"log/slog"
	"testing"
)

// TestLogFlags: --log-format and --log-level build the logger they name,
// and a bad value is refused at start with what is allowed.
func TestLogFlags(t *testing.T) {
	for _, c := range []struct {
		format, level string
		ok            bool
		enabled       slog.Level // least severe level logged
	}{
		{"json", "info", true, slog.LevelInfo},
		{"text", "debug", true, slog.LevelDebug},
		{"json", "WARN", true, slog.LevelWarn},
		{"json", "error", true, slog.LevelError},
		{"json", "nope", false, 0},
		{"xml", "info", false, 0},
	} {
		f := newFlags("test", "")
		logger := f.logFlags("json")
		if err := f.parse([]string{"--log-format", c.format, "--log-level", c.level}); err != nil {
			t.Fatal(err)
		}
		log, err := logger()
		if (err == nil) != c.ok {
			t.Errorf("%s/%s: err %v, want ok %v", c.format, c.level, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		ctx := context.Background()
		if !log.Enabled(ctx, c.enabled) || log.Enabled(ctx, c.enabled-1) {
			t.Errorf("%s/%s: logs from %v, want from %v", c.format, c.level, log.Handler(), c.enabled)
		}
	}
}
