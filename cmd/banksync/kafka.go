package main

import (
	"context"
	"os"

	"banksync/kafka"
)

type kafkaCommand struct{}

func (kafkaCommand) Run(ctx context.Context, args []string) error {
	var listen, data string
	var partitions int
	f := newFlags("kafka", "Runs the embedded Kafka-protocol cluster (franz-go's kfake) as its own process,\nso several banksync processes can share it.")
	f.String(&listen, "listen", "BANKSYNC_KAFKA_LISTEN", "127.0.0.1:9092", "address to listen on")
	f.String(&data, "data", "BANKSYNC_KAFKA_DATA", "data/kafka", `directory to persist topics in ("" keeps them in memory)`)
	f.Int(&partitions, "partitions", "BANKSYNC_PARTITIONS", 10, "partitions of the ledger topics").within(1, partitionsMax)
	logger := f.logFlags("json")
	if err := f.parse(args); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	if data != "" {
		if err := os.MkdirAll(data, 0o755); err != nil {
			return err
		}
	}
	c, err := kafka.StartCluster(kafka.ClusterConfig{Addr: listen, DataDir: data, Partitions: partitions, Logger: log})
	if err != nil {
		return err
	}
	defer c.Close()
	log.Info("kafka listening", "addrs", c.Addrs(), "data", data)
	<-ctx.Done()
	return nil
}
