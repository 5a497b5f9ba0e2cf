package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/bench/internal/hist"
)

func key(i int) string { return fmt.Sprintf("key:%010d", i) }

// values hands out incompressible values of one size: windows of a block
// of random bytes.
type values struct {
	size int
	pool []byte
}

func newValues(size int) *values {
	r := rand.New(rand.NewChaCha8([32]byte{'j', 'o', 'i', 'n'}))
	pool := make([]byte, 8<<20+size)
	for i := range pool {
		pool[i] = byte(r.Uint32())
	}
	return &values{size: size, pool: pool}
}

func (v *values) get(r *rand.Rand) []byte {
	off := r.IntN(len(v.pool) - v.size + 1)
	return v.pool[off : off+v.size]
}

// client connects to addr with the levels of every request set for the
// connection: R=2 and W=2.
func client(addr string, pool int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, PoolSize: pool, MinIdleConns: 0, MaxRetries: -1,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			if err := cn.Do(ctx, "RINGKV.CONFIG", "SET", "w", "2").Err(); err != nil {
				return err
			}
			return cn.Do(ctx, "RINGKV.CONFIG", "SET", "r", "2").Err()
		},
	})
}

// bulkLoad writes keys 0..keys-1 once, in pipelines of 100 SETs, over conc
// connections spread over addrs.
func bulkLoad(addrs []string, keys, conc int, vals *values) error {
	clients := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		clients[i] = client(a, conc)
		defer clients[i].Close()
	}
	const batch = 100
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	ctx := context.Background()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := clients[w%len(clients)]
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				lo := int(next.Add(batch)) - batch
				if lo >= keys {
					return
				}
				pipe := rc.Pipeline()
				for i := lo; i < min(lo+batch, keys); i++ {
					pipe.Set(ctx, key(i), vals.get(r), 0)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("keys %d..%d: %w", lo, min(lo+batch, keys)-1, err) })
					next.Store(int64(keys))
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// second is what the steady load did in one second.
type second struct {
	get, set     hist.Histogram
	errs, misses uint64
	// received is the joiner's anti-entropy bytes received in this second
	// (filled in from the polls by series).
	received float64
}

// recorder gathers the workers' seconds.
type recorder struct {
	origin time.Time
	mu     sync.Mutex
	secs   []*second
}

func newRecorder() *recorder { return &recorder{origin: time.Now()} }

func (r *recorder) since() time.Duration { return time.Since(r.origin) }

func (r *recorder) merge(sec int, s *second) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.secs) <= sec {
		r.secs = append(r.secs, &second{})
	}
	d := r.secs[sec]
	d.get.Merge(&s.get)
	d.set.Merge(&s.set)
	d.errs += s.errs
	d.misses += s.misses
}

func (r *recorder) series() []second {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]second, len(r.secs))
	for i, s := range r.secs {
		out[i] = *s
	}
	return out
}

// steadyLoad runs -concurrency connections, each one request at a time,
// until ctx is done; the returned channel closes when every worker has
// merged its last second.
func steadyLoad(ctx context.Context, rec *recorder, addrs []string, keys int, vals *values) <-chan struct{} {
	conc := *flagConc
	clients := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		clients[i] = client(a, conc)
	}
	var interval time.Duration
	if *flagRate > 0 {
		interval = time.Duration(float64(time.Second) * float64(conc) / float64(*flagRate))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := clients[w%len(clients)]
			r := rand.New(rand.NewPCG(uint64(w), 2))
			cur := -1
			var local second
			flush := func() {
				if cur >= 0 {
					rec.merge(cur, &local)
				}
				local = second{}
			}
			next := time.Now().Add(time.Duration(r.Int64N(int64(max(interval, 1)))))
			for ctx.Err() == nil {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
						}
						if ctx.Err() != nil {
							break
						}
					} else if d < -time.Second {
						next = time.Now() // far behind: do not burst to catch up
					}
					next = next.Add(interval)
				}
				k := key(r.IntN(keys))
				isGet := r.Float64() < *flagGetRatio
				start := time.Now()
				var err error
				if isGet {
					err = rc.Get(ctx, k).Err()
				} else {
					err = rc.Set(ctx, k, vals.get(r), 0).Err()
				}
				end := time.Now()
				if ctx.Err() != nil {
					break // cut short by the end of the run
				}
				if sec := int(end.Sub(rec.origin) / time.Second); sec != cur {
					flush()
					cur = sec
				}
				switch {
				case isGet && errors.Is(err, redis.Nil):
					local.misses++
				case err != nil:
					local.errs++
				}
				if isGet {
					local.get.Record(end.Sub(start))
				} else {
					local.set.Record(end.Sub(start))
				}
			}
			flush()
		}()
	}
	go func() {
		wg.Wait()
		for _, c := range clients {
			c.Close()
		}
		close(done)
	}()
	return done
}

// phase sums the seconds of one part of the run.
type phase struct {
	name         string
	secs         float64
	get, set     hist.Histogram
	errs, misses uint64
}

// phases splits the whole seconds of the run: before n4 started, from
// then until it was normal, from then until the old owners' drops were
// done, and after. A second is in a phase when it began at or after the
// phase's start and ended at or before its end; the seconds that straddle
// a boundary are in none.
func (r *report) phases() []phase {
	bounds := []struct {
		name     string
		from, to time.Duration
	}{
		{"before (3 nodes)", 0, r.tl.launched},
		{"during the join", r.tl.launched, r.tl.normal},
		{"n4 normal, until n1-n3 have dropped", r.tl.normal, r.afterFrom},
		{"after (4 nodes)", r.afterFrom, r.loadEnded},
	}
	var out []phase
	for _, bd := range bounds {
		p := phase{name: bd.name}
		for i := range r.series {
			s := &r.series[i]
			lo, hi := time.Duration(i)*time.Second, time.Duration(i+1)*time.Second
			if lo >= bd.from && hi <= bd.to {
				p.secs++
				p.get.Merge(&s.get)
				p.set.Merge(&s.set)
				p.errs += s.errs
				p.misses += s.misses
			}
		}
		if p.secs > 0 {
			out = append(out, p)
		}
	}
	return out
}

// fillReceived turns the polls of the joiner's bytes received into bytes
// per second of the run: each poll's increase over the one before counts
// in the second the poll was made.
func (r *report) fillReceived() {
	var last uint64 // the joiner's counter starts at 0 with its process
	for _, smp := range r.tl.received {
		sec := int(smp.at / time.Second)
		if sec >= len(r.series) {
			break
		}
		if smp.bytes >= last {
			r.series[sec].received += float64(smp.bytes - last)
		}
		last = smp.bytes
	}
}

func (r *report) csv() string {
	b := []byte("second,get_ops,set_ops,get_p50_ms,get_p99_ms,set_p50_ms,set_p99_ms,errors,get_not_found,joiner_received_bytes,phase\n")
	for i, s := range r.series {
		ph := "before"
		switch lo, hi := time.Duration(i)*time.Second, time.Duration(i+1)*time.Second; {
		case hi <= r.tl.launched:
		case lo >= r.afterFrom:
			ph = "after"
		case lo >= r.tl.launched && hi <= r.tl.normal:
			ph = "during"
		case lo >= r.tl.normal && hi <= r.afterFrom:
			ph = "drops"
		default:
			ph = "boundary"
		}
		b = fmt.Appendf(b, "%d,%d,%d,%.3f,%.3f,%.3f,%.3f,%d,%d,%.0f,%s\n", i, s.get.Count(), s.set.Count(),
			float64(s.get.Quantile(0.5))/1e6, float64(s.get.Quantile(0.99))/1e6,
			float64(s.set.Quantile(0.5))/1e6, float64(s.set.Quantile(0.99))/1e6, s.errs, s.misses, s.received, ph)
	}
	return string(b)
}
