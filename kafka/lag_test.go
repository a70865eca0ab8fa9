package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"banksync/internal/testkit"
	"banksync/kafka"
	"banksync/storetest"
)

// TestConsumerLag reads the group's lag from the cluster: every record
// before the group has consumed, none once it has applied them all (a member
// commits while no more records come), and the partitions' end offsets add
// up to what core published.
func TestConsumerLag(t *testing.T) {
	eachBroker(t, consumerLag)
}

func consumerLag(t *testing.T, brokers []string, topic string) {
	ctx := context.Background()
	p := newPipelineOn(t, brokers, topic, nil)
	storetest.Book(t, p.ledger, 20, 300)
	published, err := p.coreStore.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.consumer("lag-test")
	cfg.Lanes = 8
	c, err := kafka.NewConsumer(cfg, p.apply)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the relay to publish everything; nothing is consumed yet.
	var lag kafka.GroupLag
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("end offsets adding up to %d before consuming", published), func() error {
		var err error
		if lag, err = c.Lag(ctx); err == nil && endsSum(lag) != published {
			err = fmt.Errorf("lag %+v", lag)
		}
		return err
	})
	if lag.Group != cfg.Group || lag.Lag != published || len(lag.Partitions) == 0 {
		t.Fatalf("lag before consuming = %+v; want all %d records of group %s behind", lag, published, cfg.Group)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	lag = waitGroupCaughtUp(t, c, published, 30*time.Second)
	for _, pl := range lag.Partitions {
		if (pl.Committed != pl.End && pl.End > 0) || pl.Error != "" {
			t.Errorf("partition %+v: committed is not the end", pl)
		}
	}
}
