package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
)

// The workload and its checks drive the system through the customer and
// core APIs as well as they do in process: the channels' own handlers on
// httptest servers, core's API where it listens, faults as usual. The
// answers must come back as the in-process calls give them — a mapping
// that loses a transfer id, a code or a page would show as a broken
// promise or as operations that never succeed.
func TestWorkloadOverHTTP(t *testing.T) {
	var got answers
	drive := func(s *system) (bank, []replica, func(), error) {
		core, rs, stop, err := overHTTP(s, &got)
		// Once the run has settled, before the servers stop: the
		// workload's pages of 20 rarely reach a second page in a short
		// run, so the cursors are walked here, in small pages.
		return core, rs, func() { checkPaging(t, s, rs); stop() }, err
	}
	rep, err := run(t.Context(), Config{Seed: 3, Duration: 4 * time.Second}, drive)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	t.Logf("%s", b)
	if !rep.OK() {
		t.Errorf("over HTTP the run broke a promise: %v", rep.Examples)
	}
	for _, c := range []struct {
		name string
		n    *atomic.Int64
	}{{"transfer accepted", &got.transfers}, {"history page", &got.pages}, {"older history page", &got.olderPages},
		{"manual sync", &got.syncs}, {"transfer refused in progress", &got.inProgress}} {
		if c.n.Load() == 0 {
			t.Errorf("no %s came back over HTTP: the run proved nothing of it", c.name)
		}
	}
}

// checkPaging reads every history over HTTP in pages of pageSize, following
// the cursors to the first entry, and compares it with the history
// database.
func checkPaging(t *testing.T, s *system, rs []replica) {
	const pageSize = 3
	ctx := t.Context()
	hist := s.chans[0].store.Store
	for c := range s.cfg.Customers {
		cust := fmt.Sprintf("cust-%02d", c)
		for a := range accountsEach {
			id := fmt.Sprintf("%s-acc-%d", cust, a)
			want, err := hist.History(ctx, id, math.MaxInt64, math.MaxInt32)
			if err != nil {
				t.Fatal(err)
			}
			var got []banksync.Entry
			for cursor, pages := "", 0; pages == 0 || cursor != ""; pages++ {
				if pages > len(want) {
					t.Fatalf("%s: %d pages of %d for %d entries: the cursors go round", id, pages, pageSize, len(want))
				}
				p, err := rs[pages%len(rs)].History(ctx, cust, id, cursor, pageSize)
				if err != nil {
					t.Fatalf("%s page %d: %v", id, pages, err)
				}
				got, cursor = append(got, p.Entries...), p.NextCursor
			}
			if !slices.EqualFunc(got, want, banksync.Entry.Equal) {
				t.Errorf("%s over HTTP in pages of %d:\n%+v\nthe history database:\n%+v", id, pageSize, got, want)
			}
		}
	}
}

// overHTTP drives each replica's customer API, and core's, over HTTP.
func overHTTP(s *system, got *answers) (bank, []replica, func(), error) {
	auth, err := bhttp.NewHS256Authenticator([]byte(chaosJWTSecret), bhttp.AuthOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	hc := newHTTPClient()
	var rs []replica
	for _, cp := range s.chans {
		rs = append(rs, counted{newHTTPReplica("http://"+cp.node.Addr(), auth, hc), got})
	}
	stop := hc.CloseIdleConnections
	return newHTTPBank("http://"+s.core.addr, serviceToken, hc), rs, stop, nil
}

// answers counts the answers that came back whole over HTTP.
type answers struct {
	transfers, inProgress, pages, olderPages, syncs atomic.Int64
}

// counted is a replica that counts its answers.
type counted struct {
	replica
	got *answers
}

func (c counted) Submit(ctx context.Context, req channel.SubmitRequest) (channel.Transfer, error) {
	t, err := c.replica.Submit(ctx, req)
	switch {
	case err == nil && t.ID != "" && t.State != "":
		c.got.transfers.Add(1)
	case banksync.ErrorCode(err) == banksync.EINPROGRESS:
		c.got.inProgress.Add(1)
	}
	return t, err
}

func (c counted) History(ctx context.Context, customer, account, cursor string, limit int) (channel.Page, error) {
	p, err := c.replica.History(ctx, customer, account, cursor, limit)
	switch {
	case err != nil || p.Account.ID != account || len(p.Entries) == 0:
	case cursor == "":
		c.got.pages.Add(1)
	default:
		c.got.olderPages.Add(1)
	}
	return p, err
}

func (c counted) Sync(ctx context.Context, customer, account string) (channel.AccountState, error) {
	st, err := c.replica.Sync(ctx, customer, account)
	if err == nil && st.ID == account && st.SyncedSeq > 0 {
		c.got.syncs.Add(1)
	}
	return st, err
}
