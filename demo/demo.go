// Package demo runs core and a channel in one process with demo customers,
// their accounts and history, and optional synthetic traffic: what
// `banksync demo` serves.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/kafka"
	"banksync/ledger"
	"banksync/node"
)

// Config is what `banksync demo` runs with; tests set the hooks.
type Config struct {
	Data, Listen, CoreListen, KafkaListen string
	ServiceToken                          string
	Traffic                               bool
	Deadline                              time.Duration // how long core may take with a transfer
	// RateTransfers and RateReads limit each customer's transfers, and
	// reads and syncs, per second (bursts of twice that), as the channel's
	// --rate-transfers and --rate-reads do; 0 is no limit.
	RateTransfers, RateReads float64
	Logger                   *slog.Logger

	CoreTransport http.RoundTripper                 // the channel's transport to core (tests)
	WrapStore     func(channel.Store) channel.Store // wraps the history store (tests)
	// NoDeadLetterRepair leaves dead letters to an operator's replay
	// (tests that need to see one waiting).
	NoDeadLetterRepair bool
}

var Customers = []bhttp.DemoCustomer{
	{ID: "alice", Name: "Alice Kim", Accounts: []string{"demo-alice", "demo-alice-savings"}},
	{ID: "bob", Name: "Bob Lee", Accounts: []string{"demo-bob"}},
	{ID: "carol", Name: "Carol Park", Accounts: []string{"demo-carol"}},
	{ID: "dave", Name: "Dave Choi", Accounts: []string{"demo-dave"}},
}

// banks are the other banks money arrives from.
var banks = []string{"kb-kookmin", "shinhan", "woori", "hana", "toss-bank", "kakaobank"}

// Demo is a running demo: core, channel, and the demo's own endpoints.
type Demo struct {
	cfg     Config
	core    *node.Core
	channel *node.Channel
	auth    *bhttp.Authenticator
	secrets Secrets
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// Secrets are kept under --data so that tokens, cursors and the
// operations link stay valid across restarts.
type Secrets struct {
	ServiceToken string `json:"service_token"` // the channel's at core
	AdminToken   string `json:"admin_token"`   // the operations page's
	JWTSecret    string `json:"jwt_secret"`    // customers' tokens
}

func Start(ctx context.Context, cfg Config) (d *Demo, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = channel.DeadlineDefault
	}
	if err := LoopbackOnly(cfg.Listen); err != nil {
		return nil, err
	}
	for _, r := range []struct {
		flag string
		rate float64
	}{{"--rate-transfers", cfg.RateTransfers}, {"--rate-reads", cfg.RateReads}} {
		if !(r.rate >= 0) || math.IsInf(r.rate, 1) {
			return nil, fmt.Errorf("%s %g: want a number a second, 0 (no limit) or more", r.flag, r.rate)
		}
	}
	d = &Demo{cfg: cfg}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return d, err
	}
	if d.secrets, err = loadSecrets(filepath.Join(cfg.Data, "demo-secrets.json")); err != nil {
		return d, err
	}
	if cfg.ServiceToken != "" {
		d.secrets.ServiceToken = cfg.ServiceToken
	}
	d.core, err = node.StartCore(ctx, node.CoreConfig{
		Listen: cfg.CoreListen, DB: "sqlite:" + filepath.Join(cfg.Data, "core.db"), Partitions: 10,
		EmbeddedKafka: &kafka.ClusterConfig{Addr: cfg.KafkaListen, AnyPortIfTaken: true, DataDir: filepath.Join(cfg.Data, "kafka")}, ServiceToken: d.secrets.ServiceToken,
		AmountMax: banksync.AmountMaxDefault, Logger: cfg.Logger,
	})
	if err != nil {
		return d, err
	}
	if err := seed(ctx, d.core.Ledger()); err != nil {
		return d, err
	}
	if d.auth, err = bhttp.NewHS256Authenticator([]byte(d.secrets.JWTSecret), bhttp.AuthOptions{}); err != nil {
		return d, err
	}
	d.channel, err = node.StartChannel(ctx, node.ChannelConfig{
		Listen: cfg.Listen, DB: "sqlite:" + filepath.Join(cfg.Data, "channel.db"), CoreURL: "http://" + d.core.Addr(),
		ServiceToken: d.secrets.ServiceToken, AdminToken: d.secrets.AdminToken, JWTSecret: d.secrets.JWTSecret,
		Channel: channel.Config{Deadline: cfg.Deadline, AmountMax: banksync.AmountMaxDefault}, Kafka: d.core.Conn(), Logger: cfg.Logger,
		RateTransfers: cfg.RateTransfers, RateReads: cfg.RateReads,
		Demo:          bhttp.NewDemoServer(Customers, func(c string) (string, error) { return d.auth.Issue(c, tokenTTL) }, cfg.Logger),
		CoreTransport: cfg.CoreTransport, WrapStore: cfg.WrapStore, NoDeadLetterRepair: cfg.NoDeadLetterRepair,
	})
	if err != nil {
		return d, err
	}
	if cfg.Traffic {
		runCtx, stop := context.WithCancel(context.Background())
		d.stop = stop
		d.wg.Go(func() { d.traffic(runCtx) })
	}
	return d, nil
}

// Close stops the traffic, then the channel, then core.
func (d *Demo) Close() error {
	if d.stop != nil {
		d.stop()
	}
	d.wg.Wait()
	var errs []error
	if d.channel != nil {
		errs = append(errs, d.channel.Close())
	}
	if d.core != nil {
		errs = append(errs, d.core.Close())
	}
	return errors.Join(errs...)
}

// URL is where the channel serves the app, the operations page and the API.
func (d *Demo) URL() string { return "http://" + d.channel.Addr() }

// tokenTTL is how long a demo customer's token is valid.
const tokenTTL = 24 * time.Hour

// Token mints a bearer token for a demo customer.
func (d *Demo) Token(customer string) string {
	tok, err := d.auth.Issue(customer, tokenTTL)
	if err != nil {
		panic(err) // an HS256 signature over a valid customer id cannot fail
	}
	return tok
}

// loadSecrets reads the demo's secrets, making at the first start (and
// adding, for a data directory from an older demo) what is missing, and
// saving them atomically.
func loadSecrets(path string) (Secrets, error) {
	var s Secrets
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &s); err != nil {
			return s, fmt.Errorf("demo secrets %s are damaged; remove the file (tokens then change) or the whole data directory", path)
		}
	case !errors.Is(err, os.ErrNotExist):
		return s, err
	}
	if s.ServiceToken != "" && s.AdminToken != "" && s.JWTSecret != "" {
		return s, nil
	}
	for _, f := range []struct {
		v    *string
		make func() string
	}{
		{&s.ServiceToken, func() string { return "demo-" + randomHex(16) }},
		{&s.AdminToken, func() string { return "ops-" + randomHex(16) }},
		{&s.JWTSecret, func() string { return randomHex(32) }},
	} {
		if *f.v == "" {
			*f.v = f.make()
		}
	}
	raw, _ = json.Marshal(s)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return s, err
	}
	return s, os.Rename(tmp, path)
}

// LoopbackOnly refuses a listen address other than loopback: the demo hands
// customers' tokens to anyone who asks.
func LoopbackOnly(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if !bhttp.LoopbackHost(addr) {
		return fmt.Errorf("--listen %s: the demo signs anyone in as its customers, so it listens on loopback only (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// seed opens the demo accounts and books their history: salaries and
// money from other banks, and a few months of Alice's payments, so her
// history runs over several pages. Every step is idempotent (deposits by
// reference, transfers skipped if core knows their id), so a restart, or a
// start after a crash mid-seed, books nothing twice.
func seed(ctx context.Context, l *ledger.Ledger) error {
	for _, c := range Customers {
		for _, a := range c.Accounts {
			if _, _, err := l.CreateAccount(ctx, a, c.ID); err != nil {
				return fmt.Errorf("seed demo account %s: %w", a, err)
			}
		}
	}
	deposit := func(ref, account string, amount int64, sender string) error {
		_, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: ref, AccountID: account, Amount: amount, Sender: sender})
		if err != nil {
			return fmt.Errorf("seed demo deposit %s: %w", ref, err)
		}
		return nil
	}
	transfer := func(id, from, to string, amount int64, memo string) error {
		if out, err := l.TransferStatus(ctx, id); err != nil {
			return fmt.Errorf("seed demo transfer %s: %w", id, err)
		} else if out.Status != banksync.StatusUnknown {
			return nil
		}
		_, err := l.Transfer(ctx, banksync.TransferRequest{TransferID: id, FromAccount: from, ToAccount: to, Amount: amount,
			Deadline: time.Now().Add(time.Minute), Memo: memo})
		if err != nil {
			return fmt.Errorf("seed demo transfer %s: %w", id, err)
		}
		return nil
	}
	if err := deposit("demo-salary-1", "demo-alice", 3_000_000, "acme-payroll"); err != nil {
		return err
	}
	for i, c := range Customers[1:] {
		if err := deposit("demo-opening-"+c.ID, c.Accounts[0], int64(1_200_000+300_000*i), banks[i]); err != nil {
			return err
		}
	}
	memos := []string{"coffee", "lunch", "taxi", "books", "concert tickets", "dinner split", "groceries", "birthday gift", "movie", "rent share"}
	payees := []string{"demo-bob", "demo-carol", "demo-dave"}
	for i := 1; i <= 45; i++ {
		amount := int64((i*7919)%97+3)*1000 + int64(i*31%10)*100
		if err := transfer(fmt.Sprintf("demo-seed-%02d", i), "demo-alice", payees[i%len(payees)], amount, memos[i%len(memos)]); err != nil {
			return err
		}
		switch {
		case i%15 == 0:
			if err := transfer(fmt.Sprintf("demo-seed-savings-%02d", i), "demo-alice", "demo-alice-savings", 300_000, "savings"); err != nil {
				return err
			}
		case i%10 == 0:
			if err := deposit(fmt.Sprintf("demo-seed-refund-%02d", i), "demo-alice", amount/2, banks[i%len(banks)]); err != nil {
				return err
			}
		}
	}
	return nil
}

// traffic keeps the pages moving until ctx is done: money from other banks
// into any demo account, and transfers between bob, carol and dave through
// the channel, as their app would make them. Alice's accounts only receive,
// so her own transfers are never refused because of the traffic.
func (d *Demo) traffic(ctx context.Context) {
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var accounts []string
	for _, c := range Customers {
		accounts = append(accounts, c.Accounts...)
	}
	payers := Customers[1:]
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(300+rng.IntN(700)) * time.Millisecond):
		}
		if rng.IntN(2) == 0 {
			_, err := d.core.Ledger().Deposit(ctx, banksync.DepositRequest{
				ExternalRef: "demo-traffic-" + uuid.NewString(), AccountID: accounts[rng.IntN(len(accounts))],
				Amount: int64(10+rng.IntN(190)) * 1000, Sender: banks[rng.IntN(len(banks))],
			})
			if err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("demo traffic: deposit failed", "err", err)
			}
			continue
		}
		from, to := payers[rng.IntN(len(payers))], payers[rng.IntN(len(payers))]
		if from.ID == to.ID {
			continue
		}
		_, err := d.channel.Domain().Submit(ctx, channel.SubmitRequest{
			Customer: from.ID, IdempotencyKey: uuid.NewString(), FromAccount: from.Accounts[0], ToAccount: to.Accounts[0],
			Amount: int64(1+rng.IntN(50)) * 1000, Memo: "demo traffic",
		})
		switch banksync.ErrorCode(err) {
		case "", banksync.EFAILED, banksync.EINPROGRESS:
		default:
			if ctx.Err() == nil {
				d.cfg.Logger.Warn("demo traffic: transfer failed", "err", err)
			}
		}
	}
}

// CoreURL is where core serves its API.
func (d *Demo) CoreURL() string { return "http://" + d.core.Addr() }

// Core is the demo's core, for tests that reach past its API.
func (d *Demo) Core() *node.Core { return d.core }

// Channel is the demo's channel replica.
func (d *Demo) Channel() *node.Channel { return d.channel }

// Secrets are the demo's tokens and keys, kept under its data directory.
func (d *Demo) Secrets() Secrets { return d.secrets }
