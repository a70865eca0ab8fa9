package kafkatest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync/kafka/kafkatest"
)

// The reference cluster takes writes acknowledged by all in-sync replicas
// while its partition's leader is killed, and serves them all, in order,
// once the node is back.
func TestClusterSurvivesALeaderKill(t *testing.T) {
	c := kafkatest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.DefaultProduceTopic("smoke"), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "smoke"); err != nil {
		t.Fatal(err)
	}
	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
	produce(0, 50)
	topics, err := adm.ListTopics(ctx, "smoke")
	if err != nil {
		t.Fatal(err)
	}
	p := topics["smoke"].Partitions[0]
	if len(p.Replicas) != 3 {
		t.Fatalf("partition on %d replicas, want 3 (the cluster's default)", len(p.Replicas))
	}
	leader, err := c.LeaderOf(ctx, "smoke", 0)
	if err != nil || leader != int(p.Leader)-1 {
		t.Fatalf("LeaderOf names node %d (%v); the metadata names id %d", leader, err, p.Leader)
	}
	c.Kill(leader)
	produce(50, 100)
	if err := c.Start(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitBrokers(3); err != nil {
		t.Fatal(err)
	}

	// The active controller killed: another takes over the quorum.
	controller, err := c.ActiveController(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(controller)
	for {
		next, err := c.ActiveController(ctx)
		if err == nil && next != controller {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no controller took over from node %d: %v", controller, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := c.Start(controller); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitBrokers(3); err != nil {
		t.Fatal(err)
	}

	read, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.ConsumeTopics("smoke"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer read.Close()
	for next := 0; next < 100; {
		fs := read.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of 100 records: %v", next, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if got := string(r.Value); got != fmt.Sprint(next) {
				t.Fatalf("record %d is %q", next, got)
			}
			next++
		})
	}
}
