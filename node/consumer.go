package node

import (
	"context"
	"errors"
	"sync"

	"banksync/kafka"
)

// consumerLoop runs a replica's Kafka consumer until stopped, and can
// replace it with a new group member (StopConsumer, StartConsumer). Lag and
// Joined ask the member of the moment.
type consumerLoop struct {
	cfg   kafka.ConsumerConfig
	apply kafka.Applier

	// turn serialises start, stop and close, so that one member stops
	// before the next starts; mu guards the fields below for Lag and
	// Joined, which must not wait while a member drains.
	turn   sync.Mutex
	mu     sync.Mutex
	c      *kafka.Consumer
	cancel context.CancelFunc // nil while no member runs
	done   chan struct{}
	closed bool
}

// errConsumerClosed: StartConsumer after the replica closed.
var errConsumerClosed = errors.New("node: the replica is closed; its consumer cannot start")

func startConsumer(cfg kafka.ConsumerConfig, apply kafka.Applier) (*consumerLoop, error) {
	l := &consumerLoop{cfg: cfg, apply: apply}
	return l, l.start()
}

// start joins the group with a new member, unless one runs.
func (l *consumerLoop) start() error {
	l.turn.Lock()
	defer l.turn.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return errConsumerClosed
	case l.cancel != nil:
		return nil
	}
	c, err := kafka.NewConsumer(l.cfg, l.apply)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	l.c, l.cancel, l.done = c, cancel, done
	return nil
}

// stop ends the member, if one runs, and waits while it drains as its
// DrainTimeout says.
func (l *consumerLoop) stop() {
	l.turn.Lock()
	defer l.turn.Unlock()
	l.stopMember()
}

// close stops the member for good: start fails from now on.
func (l *consumerLoop) close() {
	l.turn.Lock()
	defer l.turn.Unlock()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.stopMember()
}

// stopMember runs under turn; the drain runs outside mu.
func (l *consumerLoop) stopMember() {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel = nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (l *consumerLoop) current() *kafka.Consumer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}

// Lag is the group's lag, as the member of the moment reads it.
func (l *consumerLoop) Lag(ctx context.Context) (kafka.GroupLag, error) { return l.current().Lag(ctx) }

// Joined tells whether the member of the moment has joined its group.
func (l *consumerLoop) Joined(ctx context.Context) error { return l.current().Joined(ctx) }
