package chaos

import (
	"context"

	"banksync"
	"banksync/channel"
)

// replica is what the workload asks of one channel instance: what a
// customer's app does. The in-process run calls the channel directly; a run
// against deployed processes goes through the customer API (httpReplica).
type replica interface {
	Submit(ctx context.Context, req channel.SubmitRequest) (channel.Transfer, error)
	// History reads a page of the account's history, newest first; cursor
	// "" is the newest page.
	History(ctx context.Context, customer, account, cursor string, limit int) (channel.Page, error)
	// Sync is the customer's manual sync (불러오기).
	Sync(ctx context.Context, customer, account string) (channel.AccountState, error)
}

// bank is what the workload asks of core: accounts opened, the other banks'
// deposits booked, and one entry read back to check what a channel showed.
type bank interface {
	CreateAccount(ctx context.Context, id, owner string) error
	// Deposit books d; sending the same ExternalRef again is safe.
	Deposit(ctx context.Context, d banksync.DepositRequest) error
	// Entry is the account's entry seq; found is false if core has none.
	Entry(ctx context.Context, account string, seq int64) (e banksync.Entry, found bool, err error)
}

// The in-process objects, as the workload drives them.
var (
	_ replica = (*chanProc)(nil)
	_ bank    = (*coreProc)(nil)
)

func (cp *chanProc) Submit(ctx context.Context, req channel.SubmitRequest) (channel.Transfer, error) {
	return cp.ch.Submit(ctx, req)
}

func (cp *chanProc) History(ctx context.Context, customer, account, cursor string, limit int) (channel.Page, error) {
	return cp.ch.History(ctx, cp.node.Cursors(), customer, account, cursor, limit)
}

func (cp *chanProc) Sync(ctx context.Context, customer, account string) (channel.AccountState, error) {
	return cp.ch.ManualSync(ctx, customer, account)
}

// CreateAccount, Deposit and Entry use core as of now: a restart replaces
// its ledger and store.
func (c *coreProc) CreateAccount(ctx context.Context, id, owner string) error {
	l, _ := c.current()
	_, _, err := l.CreateAccount(ctx, id, owner)
	return err
}

func (c *coreProc) Deposit(ctx context.Context, d banksync.DepositRequest) error {
	l, _ := c.current()
	_, err := l.Deposit(ctx, d)
	return err
}

func (c *coreProc) Entry(ctx context.Context, account string, seq int64) (banksync.Entry, bool, error) {
	_, store := c.current()
	return store.Entry(ctx, account, seq)
}

// inProcess drives the system's own objects.
func inProcess(s *system) (bank, []replica, func(), error) {
	rs := make([]replica, len(s.chans))
	for i, cp := range s.chans {
		rs[i] = cp
	}
	return s.core, rs, func() {}, nil
}
