package node

import (
	"context"
	"sync"

	"banksync/kafka"
)

// consumerLoop runs a replica's Kafka consumer until stopped, and can
// replace it with a new group member (StopConsumer, StartConsumer). Lag and Joined ask
// the member of the moment.
type consumerLoop struct {
	cfg   kafka.ConsumerConfig
	apply kafka.Applier

	mu     sync.Mutex
	c      *kafka.Consumer
	cancel context.CancelFunc
	done   chan struct{}
}

func startConsumer(cfg kafka.ConsumerConfig, apply kafka.Applier) (*consumerLoop, error) {
	l := &consumerLoop{cfg: cfg, apply: apply}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l, l.startLocked()
}

func (l *consumerLoop) startLocked() error {
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

func (l *consumerLoop) stopLocked() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
		l.cancel = nil
	}
}

// stop ends the member; its Run drains as DrainTimeout says.
func (l *consumerLoop) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopLocked()
}

func (l *consumerLoop) start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return nil
	}
	return l.startLocked()
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
