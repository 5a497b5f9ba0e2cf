package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/bench/internal/hist"
)

// errMiss is what a driver returns for a read of a key that has no value.
// It is counted apart from errors (after the load phase there should be
// none).
var errMiss = errors.New("key not found")

// driver is one target as the load generator sees it. Implementations are
// safe for concurrent use.
type driver interface {
	// Read reads key and returns a token for a following write (ringkv's
	// causal context; empty for peers that have none).
	Read(ctx context.Context, key string) (token string, err error)
	// Update writes value under key, as the successor of what token saw
	// (empty: a blind write).
	Update(ctx context.Context, key string, value []byte, token string) error
	Close()
}

// workload is a YCSB core workload: the share of reads; the rest are
// updates, or read-modify-writes when rmw is set.
type workload struct {
	name  string
	read  float64
	rmw   bool
	about string
}

var workloads = map[string]workload{
	"A": {"A", 0.5, false, "50% read, 50% update"},
	"B": {"B", 0.95, false, "95% read, 5% update"},
	"C": {"C", 1, false, "100% read"},
	"F": {"F", 0.5, true, "50% read, 50% read-modify-write (read, then a write carrying the read's context)"},
}

// key names record i, as YCSB does ("user" and a number).
func key(i int) string { return "user" + strconv.Itoa(i) }

// keyChooser picks record numbers in [0, n).
type keyChooser interface {
	next(r *rand.Rand) int
}

type uniform struct{ n int }

func (u uniform) next(r *rand.Rand) int { return r.IntN(u.n) }

// zipfian is YCSB's scrambled zipfian generator (Gray et al., "Quickly
// generating billion-record synthetic databases"), constant 0.99: the
// popular records are spread over the key space by hashing their rank.
type zipfian struct {
	n                        int
	theta, alpha, zetan, eta float64
	half                     float64
}

func newZipfian(n int) *zipfian {
	const theta = 0.99
	zeta := func(n int) float64 {
		s := 0.0
		for i := 1; i <= n; i++ {
			s += 1 / math.Pow(float64(i), theta)
		}
		return s
	}
	z := &zipfian{n: n, theta: theta, alpha: 1 / (1 - theta), zetan: zeta(n)}
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta(2)/z.zetan)
	z.half = 1 + math.Pow(0.5, theta)
	return z
}

func (z *zipfian) next(r *rand.Rand) int {
	u := r.Float64()
	uz := u * z.zetan
	var rank int
	switch {
	case uz < 1:
		rank = 0
	case uz < z.half:
		rank = 1
	default:
		rank = int(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	}
	return int(fnv64(uint64(rank)) % uint64(z.n))
}

// fnv64 is FNV-1a over the 8 bytes of v, as YCSB scrambles ranks.
func fnv64(v uint64) uint64 {
	h := uint64(0xcbf29ce484222325)
	for range 8 {
		h ^= v & 0xff
		h *= 0x100000001b3
		v >>= 8
	}
	return h
}

// phase is the outcome of one load or run phase.
type phase struct {
	ops, errs, misses uint64
	wall              time.Duration
	all, rd, wr       hist.Histogram // latency of every op, of reads, of updates (or read-modify-writes)
	firstErr          string
	perSec            []second // with -timeline only
	serverTicks       int64    // CPU of the target's processes during the phase, clock ticks (-1: unknown)
	selfTicks         int64    // CPU of this process (the clients) during the phase
}

type second struct {
	ok, failed uint64
	lat        hist.Histogram
}

func (p *phase) opsPerSec() float64 {
	if p.wall <= 0 {
		return 0
	}
	return float64(p.ops) / p.wall.Seconds()
}

// value returns size random printable bytes. Clients cut their values out
// of one such pool at random offsets, so that making a value costs little.
func value(r *rand.Rand, size int) []byte {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, size)
	for i := range b {
		b[i] = chars[r.IntN(len(chars))]
	}
	return b
}

const opTimeout = 5 * time.Second

// load inserts records 0..n-1 with clients concurrent writers.
func load(d driver, n, size, clients int) *phase {
	var next atomic.Int64
	hs := make([]phase, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			pool := value(r, size+4096)
			h := &hs[c]
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				o := r.IntN(4096)
				v := pool[o : o+size]
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				err := d.Update(ctx, key(i), v, "")
				cancel()
				h.count(time.Since(t0), false, err)
			}
		}()
	}
	wg.Wait()
	out := merge(hs)
	out.wall = time.Since(start)
	return out
}

func (p *phase) count(lat time.Duration, read bool, err error) {
	switch {
	case err == nil, errors.Is(err, errMiss):
		if err != nil {
			p.misses++
		}
		p.ops++
		p.all.Record(lat)
		if read {
			p.rd.Record(lat)
		} else {
			p.wr.Record(lat)
		}
	default:
		p.errs++
		if p.firstErr == "" {
			p.firstErr = err.Error()
		}
	}
}

func merge(hs []phase) *phase {
	out := &phase{}
	for i := range hs {
		h := &hs[i]
		out.ops += h.ops
		out.errs += h.errs
		out.misses += h.misses
		out.all.Merge(&h.all)
		out.rd.Merge(&h.rd)
		out.wr.Merge(&h.wr)
		if out.firstErr == "" {
			out.firstErr = h.firstErr
		}
		for s := range h.perSec {
			for len(out.perSec) <= s {
				out.perSec = append(out.perSec, second{})
			}
			o := &out.perSec[s]
			o.ok += h.perSec[s].ok
			o.failed += h.perSec[s].failed
			o.lat.Merge(&h.perSec[s].lat)
		}
	}
	return out
}

// runPhase runs workload w against d with clients closed-loop clients (one
// request at a time each) for dur. With timeline it also keeps per-second
// counts; at is then called once per elapsed second (from its own
// goroutine) so that the caller can act at given seconds.
func runPhase(d driver, w workload, kc keyChooser, size, clients int, dur time.Duration, timeline bool, at func(sec int)) *phase {
	hs := make([]phase, clients)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	if at != nil {
		go func() {
			for s := 1; time.Now().Before(deadline); s++ {
				time.Sleep(time.Until(start.Add(time.Duration(s) * time.Second)))
				at(s)
			}
		}()
	}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c)+1000, uint64(time.Now().UnixNano())))
			pool := value(r, size+4096)
			val := func() []byte { o := r.IntN(4096); return pool[o : o+size] }
			h := &hs[c]
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				k := key(kc.next(r))
				isRead := r.Float64() < w.read
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				var err error
				switch {
				case isRead:
					_, err = d.Read(ctx, k)
				case w.rmw:
					var tok string
					tok, err = d.Read(ctx, k)
					if err == nil || errors.Is(err, errMiss) {
						err = d.Update(ctx, k, val(), tok)
					}
				default:
					err = d.Update(ctx, k, val(), "")
				}
				cancel()
				t1 := time.Now()
				lat := t1.Sub(t0)
				h.count(lat, isRead, err)
				if timeline {
					s := int(t1.Sub(start) / time.Second) // the second it ended in
					for len(h.perSec) <= s {
						h.perSec = append(h.perSec, second{})
					}
					ps := &h.perSec[s]
					if err == nil || errors.Is(err, errMiss) {
						ps.ok++
						ps.lat.Record(lat)
					} else {
						ps.failed++
					}
				}
			}
		}()
	}
	wg.Wait()
	out := merge(hs)
	out.wall = time.Since(start)
	return out
}

func (p *phase) errSummary() string {
	if p.errs == 0 {
		return "0"
	}
	e := p.firstErr
	if len(e) > 160 {
		e = e[:160] + "…"
	}
	return fmt.Sprintf("%d (first: %s)", p.errs, e)
}
