// Command cluster runs the reference Apache Kafka cluster the real-broker
// tests use, for a try-out of banksync against a real cluster or for a
// benchmark: three KRaft nodes (each broker and controller) on loopback,
// with replication 3, from the jars scripts/kafka-broker/fetch puts in
// .cache. It prints the bootstrap addresses and runs until interrupted;
// its data stays in -dir, so it starts again where it stopped.
//
//	./scripts/kafka-broker/fetch
//	go run ./scripts/kafka-broker/cluster -dir data/kafka-cluster
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"banksync/kafka/kafkatest"
)

func main() {
	dir := flag.String("dir", "data/kafka-cluster", "data folder of the three nodes (kept between runs)")
	port := flag.Int("port", 19092, "first of the six loopback ports: three brokers, then three controllers")
	flag.Parse()
	abs, err := filepath.Abs(*dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka cluster:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := kafkatest.Run(abs, *port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka cluster:", err)
		os.Exit(1)
	}
	fmt.Printf("kafka cluster up: --kafka %s (data and logs in %s; Ctrl-C stops it)\n", strings.Join(c.Addrs(), ","), abs)
	<-ctx.Done()
	fmt.Println("kafka cluster: stopping")
	c.Close()
}
