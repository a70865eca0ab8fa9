package kafka_test

import (
	"context"
	"testing"
	"time"

	"banksync/kafka"
	"banksync/storetest"
)

// TestConsumerLag reads the group's lag from the cluster: every record
// before the group has consumed, none once it has applied them all (a member
// commits while no more records come), and the partitions' end offsets add
// up to what core published.
func TestConsumerLag(t *testing.T) {
	ctx := context.Background()
	p := newPipeline(t, nil)
	storetest.Book(t, p.ledger, 20, 300)
	published, err := p.coreStore.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Conn: kafka.Brokers(p.brokers...), Group: "lag-test", Lanes: 8}, p.apply)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(l kafka.GroupLag) (ends int64) {
		for _, pl := range l.Partitions {
			ends += pl.End
		}
		return ends
	}
	// Wait for the relay to publish everything; nothing is consumed yet.
	var lag kafka.GroupLag
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if lag, err = c.Lag(ctx); err == nil && sum(lag) == published {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag before consuming = %+v, %v; want end offsets adding up to %d", lag, err, published)
		}
	}
	if lag.Group != "lag-test" || lag.Lag != published || len(lag.Partitions) == 0 {
		t.Fatalf("lag before consuming = %+v; want all %d records behind", lag, published)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if lag, err = c.Lag(ctx); err == nil && lag.Lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag after consuming = %+v, %v; want 0", lag, err)
		}
	}
	for _, pl := range lag.Partitions {
		if (pl.Committed != pl.End && pl.End > 0) || pl.Error != "" {
			t.Errorf("partition %+v: committed is not the end", pl)
		}
	}
	if sum(lag) != published {
		t.Errorf("end offsets add up to %d, want %d", sum(lag), published)
	}
}
