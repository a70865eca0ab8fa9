package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/internal/testkit"
)

// sseEvent is one event read from a live stream.
type sseEvent struct {
	id    string
	event string
	entry banksync.Entry
	at    time.Time
}

// openStream opens a live stream at srv's path for customer (with a
// stream ticket in the query, as an EventSource does, when byTicket; else
// with the bearer token in its header) and the given headers, and returns
// its status and, for a 200, its events as they come.
func openStream(t *testing.T, s *stack, srvURL, customer, path string, byTicket bool, hdr ...string) (int, <-chan sseEvent) {
	t.Helper()
	tok, err := s.auth.Issue(customer, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	inQuery := byTicket
	if byTicket {
		account := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(path, "?", 2)[0], "/v1/accounts/"), "/stream")
		st, m := s.call(t, customer, "POST", "/v1/accounts/"+account+"/stream-ticket", nil)
		if st != 200 {
			return st, nil
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "ticket=" + url.QueryEscape(m["ticket"].(string))
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", srvURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !inQuery {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	events := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					ev.at = time.Now()
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.entry); err != nil {
					t.Errorf("event data: %v", err)
				}
			}
		}
	}()
	return 200, events
}

// nextEvents takes n events from events, failing after timeout.
func nextEvents(t *testing.T, events <-chan sseEvent, n int, timeout time.Duration) []sseEvent {
	t.Helper()
	var got []sseEvent
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended after %d of %d events", len(got), n)
			}
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("%d of %d events within %v", len(got), n, timeout)
		}
	}
	return got
}

func eventSeqs(t *testing.T, evs []sseEvent) []int64 {
	t.Helper()
	var seqs []int64
	for _, ev := range evs {
		if ev.event != "entry" || ev.id != strconv.FormatInt(ev.entry.Seq, 10) {
			t.Fatalf("event %+v: want event entry with id its seq", ev)
		}
		seqs = append(seqs, ev.entry.Seq)
	}
	return seqs
}

// TestChannelLiveStream: a deposit at core that a sync brings into the
// history reaches an open stream within a second; a reconnect with
// Last-Event-ID resumes with nothing missed and nothing twice; the token
// may come in the query (EventSource sends no header); another customer's
// account is not found; a customer's streams are bounded.
func TestChannelLiveStream(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.setup(t, []string{"a1:cust-a", "b1:cust-b"}, "a1=1000", "a1=7")
		s.call(t, "cust-a", "POST", "/v1/accounts/a1/sync", nil) // the history holds seqs 1 and 2

		st, events := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream", true)
		if st != 200 {
			t.Fatalf("open stream = %d", st)
		}
		s.deposit(t, "a1=5", "live-1")
		synced := time.Now()
		if st, m := s.call(t, "cust-a", "POST", "/v1/accounts/a1/sync", nil); st != 200 {
			t.Fatalf("sync = %d %v", st, m)
		}
		got := nextEvents(t, events, 1, 5*time.Second)
		if seqs := eventSeqs(t, got); !slices.Equal(seqs, []int64{3}) || got[0].entry.Amount != 5 {
			t.Fatalf("stream = %v %+v, want seq 3 of 5", seqs, got[0].entry)
		}
		if took := got[0].at.Sub(synced); took > time.Second {
			t.Errorf("entry reached the stream %v after the sync began, want within 1 s", took)
		} else {
			t.Logf("deposit synced to stream in %v", took.Round(time.Millisecond))
		}

		// Two more while no stream is open; a reconnect from seq 3 gets
		// exactly them, then what comes next.
		s.deposit(t, "a1=6", "live-2")
		s.deposit(t, "a1=8", "live-3")
		s.call(t, "cust-a", "POST", "/v1/accounts/a1/sync", nil)
		st, again := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream?after=1", false, "Last-Event-ID", "3")
		if st != 200 {
			t.Fatalf("reconnect = %d", st)
		}
		if seqs := eventSeqs(t, nextEvents(t, again, 2, 5*time.Second)); !slices.Equal(seqs, []int64{4, 5}) {
			t.Fatalf("resumed stream = %v, want 4 5", seqs)
		}
		s.deposit(t, "a1=9", "live-4")
		s.call(t, "cust-a", "POST", "/v1/accounts/a1/sync", nil)
		if seqs := eventSeqs(t, nextEvents(t, again, 1, 5*time.Second)); !slices.Equal(seqs, []int64{6}) {
			t.Fatalf("stream after resuming = %v, want 6", seqs)
		}

		// Refusals: each answered before any event.
		for _, tc := range []struct {
			name, customer, path string
			hdr                  []string
			status               int
		}{
			{"another customer's account", "cust-b", "/v1/accounts/a1/stream", nil, 404},
			{"a missing account", "cust-a", "/v1/accounts/zz/stream", nil, 404},
			{"Last-Event-ID not a seq", "cust-a", "/v1/accounts/a1/stream", []string{"Last-Event-ID", "x"}, 400},
			{"after negative", "cust-a", "/v1/accounts/a1/stream?after=-1", nil, 400},
			{"after beyond the history", "cust-a", "/v1/accounts/a1/stream?after=7", nil, 400},
			{"Last-Event-ID beyond the history", "cust-a", "/v1/accounts/a1/stream", []string{"Last-Event-ID", "1000000000000"}, 400},
		} {
			if st, _ := openStream(t, s, s.srv.URL, tc.customer, tc.path, false, tc.hdr...); st != tc.status {
				t.Errorf("%s = %d, want %d", tc.name, st, tc.status)
			}
		}
		// Tickets: made for one customer's one account, for a while; the
		// bearer token itself is never taken from a URL.
		tok, err := s.auth.Issue("cust-a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		cs := channel.NewCursors([]byte("test cursor secret"))
		good := cs.StreamTicket("cust-a", "a1", time.Now().Add(time.Minute))
		for _, tc := range []struct{ name, path string }{
			{"a bearer token in the query", "/v1/accounts/a1/stream?access_token=" + tok},
			{"not a ticket", "/v1/accounts/a1/stream?ticket=not-a-ticket"},
			{"another account's ticket", "/v1/accounts/b1/stream?ticket=" + good},
			{"an expired ticket", "/v1/accounts/a1/stream?ticket=" + cs.StreamTicket("cust-a", "a1", time.Now().Add(-time.Second))},
			{"a ticket signed with another key", "/v1/accounts/a1/stream?ticket=" + channel.NewCursors([]byte("x")).StreamTicket("cust-a", "a1", time.Now().Add(time.Minute))},
			{"a ticket twice", "/v1/accounts/a1/stream?ticket=" + good + "&ticket=" + good},
			{"a ticket on another route", "/v1/accounts/a1/transactions?ticket=" + good},
			{"a ticket on a look-alike route", "/v1/accounts/a1/x/stream?ticket=" + good},
		} {
			if st, _, _ := s.do(t, "", "GET", tc.path, nil); st != 401 {
				t.Errorf("%s = %d, want 401", tc.name, st)
			}
		}
		if st, _, _ := s.do(t, "cust-b", "POST", "/v1/accounts/a1/stream-ticket", nil); st != 404 {
			t.Errorf("a ticket for another customer's account = %d, want 404", st)
		}

		// cust-a holds two streams; three more fit, the sixth is refused.
		for i := 2; i < channel.LiveStreamsPerCustomerMax; i++ {
			if st, _ := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream", false); st != 200 {
				t.Fatalf("stream %d = %d", i+1, st)
			}
		}
		if st, _ := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream", false); st != 429 {
			t.Errorf("stream %d = %d, want 429", channel.LiveStreamsPerCustomerMax+1, st)
		}

		// A shutdown's StopStreams ends the open streams and refuses new
		// ones: their clients go to another replica.
		s.ch.StopStreams()
		if st, _ := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream", false); st != 503 {
			t.Errorf("a stream after StopStreams = %d, want 503", st)
		}
		ended := time.After(5 * time.Second)
		for open := true; open; {
			select {
			case _, open = <-again:
			case <-ended:
				t.Fatal("an open stream did not end within 5 s of StopStreams")
			}
		}
	})
}

// TestChannelLiveStreamSlots: a stream whose client leaves gives its slot
// back.
func TestChannelLiveStreamSlots(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.setup(t, []string{"a1:cust-a"}, "a1=1000")
	tok, err := s.auth.Issue("cust-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var cancels []context.CancelFunc
	for range channel.LiveStreamsPerCustomerMax {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", s.srv.URL+"/v1/accounts/a1/stream", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("open a stream: %v %v", resp, err)
		}
		defer resp.Body.Close()
	}
	if st, _ := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream", false); st != 429 {
		t.Fatalf("one stream too many = %d, want 429", st)
	}
	cancels[0]() // the client leaves
	testkit.Eventually(t, 5*time.Second, "the slot given back", func() error {
		if st, _ := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream", false); st != 200 {
			return fmt.Errorf("a new stream = %d", st)
		}
		return nil
	})
	if st, _ := openStream(t, s, s.srv.URL, "cust-a", "/v1/accounts/a1/stream", true); st != 429 {
		t.Fatalf("all slots taken again, a new stream = %d, want 429", st)
	}
	for _, c := range cancels[1:] {
		c()
	}
}

// TestChannelLiveStreamAcrossReplicas: on PostgreSQL, an entry another
// replica applies reaches a stream open on this one, through NOTIFY.
func TestChannelLiveStreamAcrossReplicas(t *testing.T) {
	s := newStack(t, stackOptions{store: storePostgres})
	s.setup(t, []string{"a1:cust-a"}, "a1=1000")
	other := s.replica(t)
	s.call(t, "cust-a", "POST", "/v1/accounts/a1/sync", nil)
	st, events := openStream(t, s, other.URL, "cust-a", "/v1/accounts/a1/stream", true)
	if st != 200 {
		t.Fatalf("open stream on the other replica = %d", st)
	}
	s.deposit(t, "a1=5", "live-x")
	synced := time.Now()
	s.call(t, "cust-a", "POST", "/v1/accounts/a1/sync", nil) // applied by the first replica
	got := nextEvents(t, events, 1, 5*time.Second)
	if seqs := eventSeqs(t, got); !slices.Equal(seqs, []int64{2}) {
		t.Fatalf("stream on the other replica = %v, want 2", seqs)
	}
	if took := got[0].at.Sub(synced); took > time.Second {
		t.Errorf("entry reached the other replica's stream %v after the sync began, want within 1 s", took)
	} else {
		t.Logf("across replicas in %v", took.Round(time.Millisecond))
	}
}
