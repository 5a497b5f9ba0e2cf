package server

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

// loadWindow is how many whole seconds the load figures in /v1/cluster
// cover.
const loadWindow = 10

// Latency bins: the exact microsecond count below 4 µs, then four bins per
// power of two (each at most 25% wide), up to 2^25 µs (about 33 s); slower
// requests fall in the last bin.
const loadBins = 4 * 24

// loadMeter counts the client requests a node serves (Redis commands and
// HTTP key operations) and their latencies in one bucket per second,
// keeping the last loadWindow whole seconds. Recording is two atomic
// operations on the bucket of the current second and takes no lock; the
// first request of a second claims its bucket (compare-and-swap on the
// bucket's second) and clears it, so the few requests of another core that
// land in between at the start of a second may be lost: the figures are
// approximate by that much, which a load signal can afford.
type loadMeter struct {
	start   time.Time // the monotonic origin of the seconds
	buckets [loadWindow + 2]loadBucket
}

// loadBucket is one second's latency histogram; its count is the sum of
// the bins, so concurrent requests of different latencies touch
// different words.
type loadBucket struct {
	sec  atomic.Int64 // the second this bucket holds, since start, +1 (0: never used)
	bins [loadBins]atomic.Uint64
}

func newLoadMeter() *loadMeter { return &loadMeter{start: time.Now()} }

// observe records one request that took d.
func (m *loadMeter) observe(d time.Duration) {
	m.observeAt(int64(time.Since(m.start)/time.Second), d)
}

// onCommand is resp.Options.OnCommand: every Redis command counts.
func (m *loadMeter) onCommand(_ string, d time.Duration, _ bool) { m.observe(d) }

// observeAt records a request that took d and ended in second sec.
func (m *loadMeter) observeAt(sec int64, d time.Duration) {
	tag := sec + 1
	b := &m.buckets[sec%int64(len(m.buckets))]
	if t := b.sec.Load(); t != tag {
		if t > tag || !b.sec.CompareAndSwap(t, tag) {
			if b.sec.Load() != tag {
				return // a straggler from a second already past
			}
		} else {
			for i := range b.bins {
				b.bins[i].Store(0)
			}
		}
	}
	b.bins[loadBin(d)].Add(1)
}

// status reports the load over the last whole seconds.
func (m *loadMeter) status() httpapi.LoadStatus {
	return m.statusAt(int64(time.Since(m.start) / time.Second))
}

// statusAt reports the load over the loadWindow seconds before second
// now (the second in progress is left out: it is incomplete).
func (m *loadMeter) statusAt(now int64) httpapi.LoadStatus {
	var sum [loadBins]uint64
	var total uint64
	for s := now - loadWindow; s < now; s++ {
		if s < 0 {
			continue
		}
		b := &m.buckets[s%int64(len(m.buckets))]
		if b.sec.Load() != s+1 {
			continue // no request in that second
		}
		var part [loadBins]uint64
		var n uint64
		for i := range b.bins {
			part[i] = b.bins[i].Load()
			n += part[i]
		}
		if b.sec.Load() != s+1 {
			continue // reused while we read it: that second is gone
		}
		for i := range part {
			sum[i] += part[i]
		}
		total += n
	}
	st := httpapi.LoadStatus{
		WindowSeconds:     loadWindow,
		Requests:          total,
		RequestsPerSecond: float64(total) / loadWindow,
	}
	if total > 0 {
		rank := uint64(math.Ceil(0.99 * float64(total)))
		var seen uint64
		for i, c := range sum {
			if seen += c; seen >= rank {
				st.P99Ms = float64(loadBinUpper(i)) / 1000
				break
			}
		}
	}
	return st
}

// loadBin returns the histogram bin of a latency.
func loadBin(d time.Duration) int {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	if us < 4 {
		return int(us)
	}
	e := bits.Len64(us) - 1 // us is in [2^e, 2^(e+1))
	i := 4*(e-1) + int(us>>(e-2)&3)
	return min(i, loadBins-1)
}

// loadBinUpper returns the exclusive upper bound of bin i in microseconds:
// a p99 is reported as the top of its bin, never below the true figure by
// more than the bin holds.
func loadBinUpper(i int) uint64 {
	if i < 4 {
		return uint64(i) + 1
	}
	e, m := i/4+1, uint64(i%4)
	return (5 + m) << (e - 2)
}
