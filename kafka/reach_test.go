package kafka_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"banksync/kafka"
)

// freeAddr is a loopback address nothing listens on, for now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestReach(t *testing.T) {
	t.Run("up", func(t *testing.T) {
		eachBroker(t, func(t *testing.T, brokers []string, _ string) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := kafka.Reach(ctx, kafka.Brokers(brokers...)); err != nil {
				t.Fatalf("Reach(%v) = %v, want nil", brokers, err)
			}
		})
	})
	t.Run("down", func(t *testing.T) {
		addr := freeAddr(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := kafka.Reach(ctx, kafka.Brokers(addr))
		// The cause, not merely that the time ran out.
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Reach(%s) = %v, want connection refused", addr, err)
		}
		if ctx.Err() == nil {
			t.Fatalf("Reach returned %v before its context ended; want it to keep trying", err)
		}
	})
	t.Run("up later", func(t *testing.T) {
		// A broker started beside the process comes up while Reach waits.
		addr := freeAddr(t)
		started := make(chan *kafka.Cluster, 1)
		time.AfterFunc(time.Second, func() {
			c, err := kafka.StartCluster(kafka.ClusterConfig{Addr: addr})
			if err != nil {
				t.Errorf("StartCluster: %v", err)
			}
			started <- c
		})
		t.Cleanup(func() {
			if c := <-started; c != nil {
				c.Close()
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := kafka.Reach(ctx, kafka.Brokers(addr)); err != nil {
			t.Fatalf("Reach(%s) with the broker starting after 1 s = %v, want nil", addr, err)
		}
	})
	t.Run("no brokers", func(t *testing.T) {
		if err := kafka.Reach(context.Background(), kafka.Conn{}); err == nil {
			t.Fatal("Reach(nil) = nil, want an error")
		}
	})
}
