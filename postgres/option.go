package postgres

import "log/slog"

// Option configures a store when it is opened.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

func newOptions(opts []Option) options {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithLogger sets where a store logs what an operator should know about,
// such as losing and re-establishing the ledger's writer session. By default
// nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}
