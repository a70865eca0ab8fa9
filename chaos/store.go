package chaos

import (
	"context"
	"time"

	"banksync"
	"banksync/channel"
)

// HookedStore is a channel store whose every call first asks Before, which
// may fail it (an injected fault), hold it (a hung database) or let it
// through: the one wrapper the chaos run and the failure tests inject
// history-database faults with. write tells a call that changes the
// database from one that only reads. Close is not hooked.
type HookedStore struct {
	channel.Store
	Before func(ctx context.Context, write bool) error
}

// call runs Before, if set.
func (h *HookedStore) call(ctx context.Context, write bool) error {
	if h.Before == nil {
		return nil
	}
	return h.Before(ctx, write)
}

func (h *HookedStore) Account(ctx context.Context, id string) (channel.AccountState, bool, error) {
	if err := h.call(ctx, false); err != nil {
		return channel.AccountState{}, false, err
	}
	return h.Store.Account(ctx, id)
}

func (h *HookedStore) AccountsOf(ctx context.Context, owner string) ([]channel.AccountState, error) {
	if err := h.call(ctx, false); err != nil {
		return nil, err
	}
	return h.Store.AccountsOf(ctx, owner)
}

func (h *HookedStore) AddAccount(ctx context.Context, id, owner string) error {
	if err := h.call(ctx, true); err != nil {
		return err
	}
	return h.Store.AddAccount(ctx, id, owner)
}

func (h *HookedStore) CreateTransfer(ctx context.Context, t channel.Transfer) (channel.Transfer, bool, error) {
	if err := h.call(ctx, true); err != nil {
		return channel.Transfer{}, false, err
	}
	return h.Store.CreateTransfer(ctx, t)
}

func (h *HookedStore) Transfer(ctx context.Context, id string) (channel.Transfer, bool, error) {
	if err := h.call(ctx, false); err != nil {
		return channel.Transfer{}, false, err
	}
	return h.Store.Transfer(ctx, id)
}

func (h *HookedStore) Settle(ctx context.Context, id, state, reason string, at time.Time) (channel.Transfer, bool, error) {
	if err := h.call(ctx, true); err != nil {
		return channel.Transfer{}, false, err
	}
	return h.Store.Settle(ctx, id, state, reason, at)
}

func (h *HookedStore) PendingBefore(ctx context.Context, t time.Time, limit int) ([]channel.Transfer, error) {
	if err := h.call(ctx, false); err != nil {
		return nil, err
	}
	return h.Store.PendingBefore(ctx, t, limit)
}

func (h *HookedStore) PendingOf(ctx context.Context, account string) ([]channel.Transfer, error) {
	if err := h.call(ctx, false); err != nil {
		return nil, err
	}
	return h.Store.PendingOf(ctx, account)
}

func (h *HookedStore) Apply(ctx context.Context, account string, es []banksync.Entry, at time.Time) (channel.AccountState, error) {
	if err := h.call(ctx, true); err != nil {
		return channel.AccountState{}, err
	}
	return h.Store.Apply(ctx, account, es, at)
}

func (h *HookedStore) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	if err := h.call(ctx, true); err != nil {
		return nil, err
	}
	return h.Store.ApplyRuns(ctx, runs, at)
}

func (h *HookedStore) MarkStale(ctx context.Context, account string, at time.Time) error {
	if err := h.call(ctx, true); err != nil {
		return err
	}
	return h.Store.MarkStale(ctx, account, at)
}

func (h *HookedStore) StaleAccounts(ctx context.Context, limit int) ([]string, error) {
	if err := h.call(ctx, false); err != nil {
		return nil, err
	}
	return h.Store.StaleAccounts(ctx, limit)
}

func (h *HookedStore) Backlog(ctx context.Context) (channel.Backlog, error) {
	if err := h.call(ctx, false); err != nil {
		return channel.Backlog{}, err
	}
	return h.Store.Backlog(ctx)
}

func (h *HookedStore) ClearStale(ctx context.Context, account string, gen int64) error {
	if err := h.call(ctx, true); err != nil {
		return err
	}
	return h.Store.ClearStale(ctx, account, gen)
}

func (h *HookedStore) Statement(ctx context.Context, account string, afterSeq, throughSeq int64, from, to time.Time, limit int) ([]banksync.Entry, error) {
	if err := h.call(ctx, false); err != nil {
		return nil, err
	}
	return h.Store.Statement(ctx, account, afterSeq, throughSeq, from, to, limit)
}

func (h *HookedStore) History(ctx context.Context, account string, beforeSeq int64, limit int) ([]banksync.Entry, error) {
	if err := h.call(ctx, false); err != nil {
		return nil, err
	}
	return h.Store.History(ctx, account, beforeSeq, limit)
}
