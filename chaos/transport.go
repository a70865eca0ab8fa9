// Package chaos injects faults into a running banksync and checks its
// promises.
package chaos

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault is what happens to one request between the channel and core.
type Fault int

const (
	// DropRequest: the request never reaches core.
	DropRequest Fault = iota + 1
	// DropResponse: core executes the request, its answer is lost.
	DropResponse
	// DelayRequest: the request is held in the network; the caller gives
	// up at its timeout, and the request reaches core only on Release.
	DelayRequest
	// SlowCore: the request reaches core only after the caller's timeout
	// (core too slow to answer in time), and core's answer is lost.
	SlowCore
)

// slowCoreDelay is how long a SlowCore request is held past its caller's
// timeout before it reaches core.
const slowCoreDelay = 50 * time.Millisecond

// ErrInjected is the error a caller sees for an injected fault.
var ErrInjected = errors.New("chaos: injected network fault")

// Transport is an http.RoundTripper that injects faults into the requests
// it is told to.
type Transport struct {
	Next http.RoundTripper
	// Choose, when set, picks the fault of a request that no Plan matched
	// (0: none). It is called from many goroutines.
	Choose func(*http.Request) Fault

	mu      sync.Mutex
	planned []plan
	held    []*http.Request
}

type plan struct {
	method, pathContains string
	fault                Fault
}

// NewTransport returns a Transport in front of next (nil: the default).
func NewTransport(next http.RoundTripper) *Transport {
	if next == nil {
		next = http.DefaultTransport
	}
	return &Transport{Next: next}
}

// Plan plans fault for the next request whose method matches and whose path
// contains pathContains.
func (t *Transport) Plan(method, pathContains string, f Fault) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.planned = append(t.planned, plan{method, pathContains, f})
}

func (t *Transport) take(req *http.Request) Fault {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, p := range t.planned {
		if p.method == req.Method && strings.Contains(req.URL.Path, p.pathContains) {
			t.planned = append(t.planned[:i], t.planned[i+1:]...)
			return p.fault
		}
	}
	if t.Choose != nil {
		return t.Choose(req)
	}
	return 0
}

func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch t.take(req) {
	case DropRequest:
		drain(req)
		return nil, ErrInjected
	case DropResponse:
		resp, err := t.Next.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil, ErrInjected
	case DelayRequest:
		late, err := detach(req)
		if err != nil {
			return nil, err
		}
		t.mu.Lock()
		t.held = append(t.held, late)
		t.mu.Unlock()
		<-req.Context().Done() // the caller times out waiting
		return nil, req.Context().Err()
	case SlowCore:
		late, err := detach(req)
		if err != nil {
			return nil, err
		}
		<-req.Context().Done()
		go func() {
			time.Sleep(slowCoreDelay)
			if resp, err := t.Next.RoundTrip(late); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		return nil, req.Context().Err()
	}
	return t.Next.RoundTrip(req)
}

// Release delivers the held requests to core now, one by one, and returns
// core's answers (status and body) in order.
func (t *Transport) Release() []string {
	t.mu.Lock()
	held := t.held
	t.held = nil
	t.mu.Unlock()
	var answers []string
	for _, req := range held {
		resp, err := t.Next.RoundTrip(req)
		if err != nil {
			answers = append(answers, "error: "+err.Error())
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers = append(answers, resp.Status+" "+string(b))
	}
	return answers
}

// detach copies req so it can be sent after its caller has gone.
func detach(req *http.Request) (*http.Request, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	late := req.Clone(context.Background())
	late.Body = io.NopCloser(bytes.NewReader(body))
	late.ContentLength = int64(len(body))
	return late, nil
}

func drain(req *http.Request) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
}
