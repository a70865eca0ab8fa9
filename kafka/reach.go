package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// reachInterval is the pause between rounds of Reach: short, because a
// broker starting beside us answers within a second or two and a refused
// connection costs nothing to try again.
const reachInterval = 250 * time.Millisecond

// Reach waits until one of brokers answers a metadata request, trying again
// until ctx ends, and then returns the last error a broker gave (or ctx's,
// if none answered at all). Clients connect lazily, so without this a wrong
// address would show only as warnings in the log, for ever; a process calls
// it once at startup, bounded by ctx, to fail with the cause instead.
func Reach(ctx context.Context, brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("no brokers")
	}
	// No logger: the error returned is the one report of a failure.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	var cause error // the last error that is not ctx ending
	for {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
			cause = err
		}
		select {
		case <-ctx.Done():
			if cause == nil {
				return fmt.Errorf("no answer: %w", ctx.Err())
			}
			return cause
		case <-time.After(reachInterval):
		}
	}
}
