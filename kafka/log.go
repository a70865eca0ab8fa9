package kafka

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kfakeLogger sends the embedded cluster's printf-style logs to slog. kfake
// logs every request at its info level, so that goes to slog's debug level
// to keep the demo's output readable.
type kfakeLogger struct{ l *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var sl slog.Level
	switch level {
	case kfake.LogLevelError:
		sl = slog.LevelError
	case kfake.LogLevelWarn:
		sl = slog.LevelWarn
	case kfake.LogLevelInfo, kfake.LogLevelDebug:
		sl = slog.LevelDebug
	default:
		return
	}
	// Formatting costs more than the check; kfake logs on every request.
	if !k.l.Enabled(context.Background(), sl) {
		return
	}
	k.l.Log(context.Background(), sl, fmt.Sprintf(format, args...))
}

// kgoLogger sends franz-go's client logs to slog, each line marked
// client=franz-go. The client logs its own bookkeeping (connections, group
// joins, assignments, metadata) at its info level, a dozen lines and more at
// every start that an operator has nothing to do about: those go to slog's
// debug level, and the client's warnings and errors stay at theirs. So at
// --log-level info only the client's warnings and errors show; at debug,
// everything it says.
type kgoLogger struct{ l *slog.Logger }

func newKgoLogger(l *slog.Logger) kgoLogger {
	return kgoLogger{orDiscard(l).With("client", "franz-go")}
}

// Level asks franz-go for no more than slog keeps, as Log maps the
// levels: its info and debug lines only when slog keeps debug.
func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case k.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelDebug
	case k.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case k.l.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var sl slog.Level
	switch level {
	case kgo.LogLevelError:
		sl = slog.LevelError
	case kgo.LogLevelWarn:
		sl = slog.LevelWarn
	case kgo.LogLevelInfo, kgo.LogLevelDebug:
		sl = slog.LevelDebug
	default:
		return
	}
	k.l.Log(context.Background(), sl, msg, keyvals...)
}

// orDiscard returns l, or a logger that drops everything when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
