package kafka_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"banksync/internal/testkit"
	"banksync/kafka"
	"banksync/kafka/kafkatest"
)

// TestCoreCreatesDurableTopics: on a three-broker cluster whose brokers
// keep Kafka's default min.insync.replicas of 1, the topics core creates
// have three replicas and min.insync.replicas 2 of their own, so an
// acknowledged event survives the loss of any one broker. On the embedded
// single-broker cluster they keep one replica and no such setting (a write
// could never be acknowledged by two).
func TestCoreCreatesDurableTopics(t *testing.T) {
	eachBroker(t, func(t *testing.T, brokers []string, topic string) {
		ctx := context.Background()
		pub, err := kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: kafka.Brokers(brokers...), Topic: topic, DLQTopic: kafka.DLQTopicOf(topic), Partitions: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		want := replicasAndISR{1, 0}
		if len(brokers) >= 3 {
			want = replicasAndISR{3, 2}
		}
		for _, name := range []string{topic, kafka.DLQTopicOf(topic)} {
			if got := topicDurability(t, brokers, name); got != want {
				t.Errorf("topic %s: %+v, want %+v", name, got, want)
			}
		}
	})
}

// TestWeakTopicIsReported: a topic made by someone else with one replica
// is used as it is, and core says in its log that one broker failure can
// lose acknowledged events.
func TestWeakTopicIsReported(t *testing.T) {
	brokers := kafkatest.Shared(t).Addrs()
	topic := testTopic(t)
	adm := adminOn(t, brokers)
	for _, name := range []string{topic, kafka.DLQTopicOf(topic)} {
		if _, err := adm.CreateTopic(context.Background(), 2, 1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	pub, err := kafka.NewPublisher(context.Background(), kafka.PublisherConfig{
		Conn: kafka.Brokers(brokers...), Topic: topic, DLQTopic: kafka.DLQTopicOf(topic),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	pub.Close()
	if got := strings.Count(logs.String(), "can lose acknowledged records"); got != 2 {
		t.Errorf("%d warnings about weak topics, want 2; log:\n%s", got, logs.String())
	}
	if got := topicDurability(t, brokers, topic); got != (replicasAndISR{1, 0}) {
		t.Errorf("existing topic changed to %+v", got)
	}
}

type replicasAndISR struct {
	replicas int
	// minISR is min.insync.replicas set on the topic itself; 0 when the
	// topic takes the broker's.
	minISR int
}

func topicDurability(t *testing.T, brokers []string, topic string) replicasAndISR {
	t.Helper()
	adm := adminOn(t, brokers)
	ctx := context.Background()
	got := replicasAndISR{replicas: waitTopic(t, adm, topic).Partitions.NumReplicas()}
	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := configs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rc.Configs {
		if c.Key == "min.insync.replicas" && c.Source == kmsg.ConfigSourceDynamicTopicConfig {
			got.minISR = int(c.MaybeValue()[0] - '0')
		}
	}
	return got
}

// waitTopic is topic's detail once the broker adm asks knows it, or as it
// stands after consumeTimeout: Apache Kafka's controller has a topic once
// CreateTopics answers, and a broker learns of it a moment later,
// answering UNKNOWN_TOPIC_OR_PARTITION until then (clients retry that).
func waitTopic(t *testing.T, adm *kadm.Client, topic string) kadm.TopicDetail {
	t.Helper()
	var td kadm.TopicDetail
	testkit.Within(consumeTimeout, func() error {
		topics, err := adm.ListTopics(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		td = topics[topic]
		return td.Err
	})
	return td // the caller tells what it expected of it
}

func adminOn(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}
