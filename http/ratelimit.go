package http

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"banksync"
)

// RateLimit is one customer's budget for a kind of request: Rate a second
// on average, Burst at once. A zero Rate is no limit.
type RateLimit struct {
	Rate  float64
	Burst int
}

// Limits the customers' buckets are kept within.
const (
	limiterCustomersMax = 100_000         // buckets kept at most; beyond, new customers share one
	limiterSweepEvery   = time.Minute     // how often idle buckets are forgotten
	limiterIdleMin      = 5 * time.Minute // a bucket idle this long is forgotten (and it was full again)
)

// limiter keeps a token bucket per customer. A customer over their budget
// is refused; the others are not affected.
type limiter struct {
	limit     RateLimit
	mu        sync.Mutex
	buckets   map[string]*bucket
	overflow  *bucket // shared by customers beyond limiterCustomersMax
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(l RateLimit) *limiter {
	if l.Rate <= 0 {
		return nil
	}
	l.Burst = max(l.Burst, 1)
	return &limiter{limit: l, buckets: map[string]*bucket{}, overflow: &bucket{lim: rate.NewLimiter(rate.Limit(l.Rate), l.Burst)}}
}

// allow takes one request from customer's bucket, or says how long until
// one is there. A nil limiter allows everything.
func (l *limiter) allow(customer string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	b := l.bucketOf(customer, now)
	l.mu.Unlock()
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// bucketOf returns customer's bucket, making it; l.mu is held. Buckets idle
// past limiterIdleMin are full again, so forgetting them changes nothing.
func (l *limiter) bucketOf(customer string, now time.Time) *bucket {
	if now.Sub(l.lastSweep) >= limiterSweepEvery {
		for c, b := range l.buckets {
			if now.Sub(b.seen) >= limiterIdleMin {
				delete(l.buckets, c)
			}
		}
		l.lastSweep = now
	}
	b, ok := l.buckets[customer]
	switch {
	case ok:
	case len(l.buckets) >= limiterCustomersMax:
		b = l.overflow
	default:
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.limit.Rate), l.limit.Burst)}
		l.buckets[customer] = b
	}
	b.seen = now
	return b
}

// writeRateLimited answers 429 with Retry-After in whole seconds.
func writeRateLimited(w http.ResponseWriter, r *http.Request, s *ChannelServer, retryAfter time.Duration) {
	secs := int(math.Ceil(retryAfter.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	writeError(w, r, s.log, banksync.Errorf(banksync.ERATELIMITED, "too many requests; try again in %d s", max(secs, 1)))
}
