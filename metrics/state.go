package metrics

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"banksync/channel"
	"banksync/kafka"
)

// ChannelState is what a scrape reads of the channel's shared state. A nil
// source is left out (no Kafka: no lag, no dead letters).
type ChannelState struct {
	Lag         func(context.Context) (kafka.GroupLag, error)
	DeadLetters func(context.Context) (kafka.Depth, error)     // not yet replayed, and parked
	Backlog     func(context.Context) (channel.Backlog, error) // pending transfers, stale accounts
	Now         func() time.Time                               // default time.Now
	Logger      *slog.Logger
}

var (
	lagDesc = prometheus.NewDesc("banksync_consumer_lag_records",
		"Records of the topic not yet committed by the consumer group, per partition.", []string{"topic", "partition"}, nil)
	dlqDesc = prometheus.NewDesc("banksync_dlq_depth",
		"Dead letters not yet replayed (waiting or held), plus the parked ones.", nil, nil)
	dlqParkedDesc = prometheus.NewDesc("banksync_dlq_parked",
		"Dead letters parked: they cannot be decoded, and their accounts were synced from core instead. A running count.", nil, nil)
	pendingDesc = prometheus.NewDesc("banksync_pending_transfers",
		"Transfers waiting for core's answer.", nil, nil)
	oldestDesc = prometheus.NewDesc("banksync_pending_transfer_oldest_age_seconds",
		"Age of the oldest pending transfer; 0 when none is pending.", nil, nil)
	staleDesc = prometheus.NewDesc("banksync_stale_accounts",
		"Accounts whose history may be behind core's.", nil, nil)
)

// channelCollector reads ChannelState at each scrape.
type channelCollector struct{ s ChannelState }

// RegisterChannelState registers the gauges read from s at each scrape.
func RegisterChannelState(reg prometheus.Registerer, s ChannelState) {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	reg.MustRegister(channelCollector{s})
}

func (c channelCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagDesc, dlqDesc, dlqParkedDesc, pendingDesc, oldestDesc, staleDesc} {
		ch <- d
	}
}

// Collect reads each source; one that fails is reported as an invalid
// metric (the scrape shows the rest) and logged.
func (c channelCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	fail := func(d *prometheus.Desc, err error) {
		c.s.Logger.Warn("metrics: reading state failed", "metric", d.String(), "err", err)
		ch <- prometheus.NewInvalidMetric(d, err)
	}
	if c.s.Lag != nil {
		if lag, err := c.s.Lag(ctx); err != nil {
			fail(lagDesc, err)
		} else {
			for _, p := range lag.Partitions {
				if p.Lag >= 0 {
					ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(p.Lag), lag.Topic, strconv.Itoa(int(p.Partition)))
				}
			}
		}
	}
	if c.s.DeadLetters != nil {
		if d, err := c.s.DeadLetters(ctx); err != nil {
			fail(dlqDesc, err) // logs once for the two
			ch <- prometheus.NewInvalidMetric(dlqParkedDesc, err)
		} else {
			ch <- prometheus.MustNewConstMetric(dlqDesc, prometheus.GaugeValue, float64(d.Total()))
			ch <- prometheus.MustNewConstMetric(dlqParkedDesc, prometheus.GaugeValue, float64(d.Parked))
		}
	}
	if c.s.Backlog != nil {
		if b, err := c.s.Backlog(ctx); err != nil {
			fail(pendingDesc, err) // logs once for the three
			ch <- prometheus.NewInvalidMetric(oldestDesc, err)
			ch <- prometheus.NewInvalidMetric(staleDesc, err)
		} else {
			age := 0.0
			if !b.OldestPending.IsZero() {
				age = max(0, c.s.Now().Sub(b.OldestPending).Seconds())
			}
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(b.Pending))
			ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
			ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, float64(b.Stale))
		}
	}
}
