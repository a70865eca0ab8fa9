package kafka

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// lanesDefault is how many lanes a consumer runs when not told otherwise: the
// seed's 100 threads per consumer.
const lanesDefault = 100

// laneQueueMax bounds the jobs waiting on one lane. A full lane blocks
// Dispatch, which stops the poll loop, which stops fetching: backpressure all
// the way to Kafka instead of an unbounded buffer.
const laneQueueMax = 256

// errLanesClosed is returned by laneSet.Dispatch after Close.
var errLanesClosed = errors.New("kafka: lanes closed")

// laneSet runs jobs on a fixed set of worker goroutines, each with a bounded
// queue. A job goes to the lane its key hashes to, so all the jobs of one key
// (an account) run on one goroutine, one at a time, in dispatch order, while
// different keys run in parallel.
type laneSet struct {
	seed  maphash.Seed
	lanes []*lane
	wg    sync.WaitGroup

	// epoch stamps each job at dispatch; Abandon replaces it (cancelling
	// its context, which the running jobs were given), and a worker drops a
	// job from an older epoch instead of starting it.
	epoch atomic.Pointer[generation]

	// mu orders Dispatch (read) against Close (write), so no job is sent on a
	// closed queue.
	mu     sync.RWMutex
	closed bool
}

type lane struct {
	queue chan laneJob
	// running is held by the worker while it decides to start a job and runs
	// it, so Abandon can wait for the running job.
	running sync.Mutex
}

type laneJob struct {
	epoch *generation
	run   func(ctx context.Context)
}

// generation is the time between two Abandons; its context ends at the
// second.
type generation struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newGeneration() *generation {
	ctx, cancel := context.WithCancel(context.Background())
	return &generation{ctx: ctx, cancel: cancel}
}

// newLaneSet starts n lanes (lanesDefault when n <= 0), each queuing up to
// laneQueueMax jobs. Close or Abandon-then-Close stops them.
func newLaneSet(n int) *laneSet {
	return newLanes(n, laneQueueMax)
}

func newLanes(n, queueMax int) *laneSet {
	if n <= 0 {
		n = lanesDefault
	}
	l := &laneSet{seed: maphash.MakeSeed(), lanes: make([]*lane, n)}
	l.epoch.Store(newGeneration())
	for i := range l.lanes {
		ln := &lane{queue: make(chan laneJob, queueMax)}
		l.lanes[i] = ln
		l.wg.Go(func() { l.work(ln) })
	}
	return l
}

func (l *laneSet) work(ln *lane) {
	for j := range ln.queue {
		ln.running.Lock()
		// Loaded under running: a job that passes this check before Abandon
		// bumps the epoch is one Abandon waits for; any later one is dropped.
		if j.epoch == l.epoch.Load() {
			j.run(j.epoch.ctx)
		}
		ln.running.Unlock()
	}
}

// Len returns the number of lanes.
func (l *laneSet) Len() int { return len(l.lanes) }

// Lane returns the index of the lane for key; stable for the life of l.
func (l *laneSet) Lane(key string) int {
	return int(maphash.String(l.seed, key) % uint64(len(l.lanes)))
}

// Dispatch queues job on the lane of key. It blocks while that lane's queue
// is full, and returns ctx.Err() if ctx is done first (an already-done ctx
// queues nothing), or errLanesClosed after Close. A job dispatched before or
// during an Abandon may be dropped by it; a job running then sees the
// context it is given end, and should return promptly.
func (l *laneSet) Dispatch(ctx context.Context, key string, job func(ctx context.Context)) error {
	return l.DispatchTo(ctx, l.Lane(key), job)
}

// DispatchTo is Dispatch to the lane with index lane (see Lane): one job for
// several keys of one lane.
func (l *laneSet) DispatchTo(ctx context.Context, lane int, job func(ctx context.Context)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return errLanesClosed
	}
	j := laneJob{epoch: l.epoch.Load(), run: job}
	select {
	case l.lanes[lane].queue <- j:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Abandon drops every queued job that has not started, ends the context of
// the running ones and waits for them to return; on revocation, the dropped
// records are re-delivered to the partitions' next owner. The lanes stay
// open for new jobs.
func (l *laneSet) Abandon() {
	l.epoch.Swap(newGeneration()).cancel()
	for _, ln := range l.lanes {
		ln.running.Lock()
		//lint:ignore SA2001 the empty critical section waits for the running job.
		ln.running.Unlock()
	}
}

// Close stops taking jobs, runs every job already queued, and waits for the
// lanes to finish. It is safe to call more than once.
func (l *laneSet) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		for _, ln := range l.lanes {
			close(ln.queue)
		}
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.epoch.Load().cancel()
}
