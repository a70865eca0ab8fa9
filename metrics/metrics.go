// Package metrics exposes what core and the channel do as Prometheus
// metrics, on a registry of their own: counters and histograms observed as
// things happen (the ledger's commits, the relay's rounds, transfers,
// history writes, reconciler decisions, HTTP requests), and gauges read
// from the stores and the Kafka cluster when Prometheus scrapes.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"banksync/channel"
)

// scrapeTimeout bounds the reads a scrape makes (stores, Kafka).
const scrapeTimeout = 3 * time.Second

// NewRegistry returns a registry with the Go runtime's and the process's
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg at /metrics.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}

// Ledger observes core's writer and relay.
type Ledger struct {
	commits    prometheus.Counter
	batchSize  prometheus.Histogram
	commitTime prometheus.Histogram
	entries    prometheus.Counter
	published  prometheus.Counter
	publishLag prometheus.Histogram
}

// NewLedger registers core's metrics; backlog reads the outbox backlog at
// each scrape.
func NewLedger(reg prometheus.Registerer, backlog func(context.Context) (int64, error)) *Ledger {
	m := &Ledger{
		commits: prometheus.NewCounter(prometheus.CounterOpts{Name: "banksync_core_commits_total",
			Help: "Group commits of the core ledger's writer."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "banksync_core_commit_requests",
			Help:    "Requests (transfers, deposits, fences) decided in one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "banksync_core_commit_duration_seconds",
			Help:    "Time of one group commit, reads included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{Name: "banksync_core_entries_total",
			Help: "Ledger entries committed."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "banksync_outbox_published_total",
			Help: "Ledger entries the outbox relay published to Kafka."}),
		publishLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "banksync_outbox_publish_lag_seconds",
			Help:    "How long the oldest entry of a relay round waited between its booking and its publication.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
	}
	backlogGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "banksync_outbox_backlog",
		Help: "Committed entries not yet published to Kafka (-1 if it could not be read)."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
		defer cancel()
		n, err := backlog(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	reg.MustRegister(m.commits, m.batchSize, m.commitTime, m.entries, m.published, m.publishLag, backlogGauge)
	return m
}

// Committed implements ledger.Observer.
func (m *Ledger) Committed(requests, entries int, took time.Duration) {
	m.commits.Inc()
	m.batchSize.Observe(float64(requests))
	m.commitTime.Observe(took.Seconds())
	m.entries.Add(float64(entries))
}

// Published is the relay's RelayConfig.Published.
func (m *Ledger) Published(entries int, lag time.Duration) {
	m.published.Add(float64(entries))
	m.publishLag.Observe(lag.Seconds())
}

// Channel observes the channel: transfers, the sync engine, the reconciler.
type Channel struct {
	transfers    *prometheus.CounterVec
	transferTime *prometheus.HistogramVec
	applied      prometheus.Counter
	gapFills     prometheus.Counter
	gapEntries   prometheus.Counter
	decisions    *prometheus.CounterVec
	replayed     prometheus.Counter
}

// NewChannel registers the channel's metrics.
func NewChannel(reg prometheus.Registerer) *Channel {
	m := &Channel{
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "banksync_transfers_total",
			Help: "Transfers submitted, by the answer given: completed, failed, pending (core did not answer in time) or refused (one already pending)."},
			[]string{"outcome"}),
		transferTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "banksync_transfer_duration_seconds",
			Help:    "Time to answer a transfer submission, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"outcome"}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "banksync_history_entries_applied_total",
			Help: "Ledger entries written to the history (repeats skipped)."}),
		gapFills: prometheus.NewCounter(prometheus.CounterOpts{Name: "banksync_sync_gap_fills_total",
			Help: "Times the sync engine read entries from core to fill a hole or reach core's head."}),
		gapEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "banksync_sync_gap_fill_entries_total",
			Help: "Entries the sync engine read from core."}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "banksync_reconciler_decisions_total",
			Help: "The reconciler's decisions: fenced (by outcome), repaired, repair_failed."}, []string{"action", "outcome"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "banksync_dlq_replayed_total",
			Help: "Dead letters re-applied by a replay."}),
	}
	for _, o := range []string{channel.OutcomeCompleted, channel.OutcomeFailed, channel.OutcomePending, channel.OutcomeRefused} {
		m.transfers.WithLabelValues(o) // present at 0 from the start
	}
	reg.MustRegister(m.transfers, m.transferTime, m.applied, m.gapFills, m.gapEntries, m.decisions, m.replayed)
	return m
}

// Submitted implements channel.Observer.
func (m *Channel) Submitted(outcome string, took time.Duration) {
	m.transfers.WithLabelValues(outcome).Inc()
	m.transferTime.WithLabelValues(outcome).Observe(took.Seconds())
}

// Applied implements channel.Observer.
func (m *Channel) Applied(entries int) { m.applied.Add(float64(entries)) }

// GapFilled implements channel.Observer.
func (m *Channel) GapFilled(entries int) {
	m.gapFills.Inc()
	m.gapEntries.Add(float64(entries))
}

// Decided implements channel.Observer.
func (m *Channel) Decided(d channel.Decision) {
	m.decisions.WithLabelValues(d.Action, d.Outcome).Inc()
}

// Replayed counts dead letters a replay applied.
func (m *Channel) Replayed(n int) { m.replayed.Add(float64(n)) }

// HTTP counts requests and their durations by route and status code.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTP registers the HTTP metrics of one server ("core" or "channel").
func NewHTTP(reg prometheus.Registerer, server string) *HTTP {
	m := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "banksync_http_requests_total",
			Help: "HTTP requests answered, by route and status code.", ConstLabels: prometheus.Labels{"server": server}},
			[]string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "banksync_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route.", ConstLabels: prometheus.Labels{"server": server},
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Observe counts one request answered on route (a pattern such as
// "POST /v1/transfers", so the label's values stay few) with status.
func (m *HTTP) Observe(route string, status int, took time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(took.Seconds())
}
