// Package hist is a small log-linear latency histogram: cheap enough to
// record every operation of a benchmark, with at most ~3% relative error on
// the reported quantiles.
//
// Values below 64ns get one bucket each. Above that, every power-of-two range
// [2^k, 2^(k+1)) is split into 32 equal buckets, so a bucket is never wider
// than 1/32 of its lower bound.
package hist

import (
	"math"
	"math/bits"
	"time"
)

const (
	subBits    = 5
	subCount   = 1 << subBits // buckets per power of two
	linearMax  = 2 * subCount // values below this are exact
	numBuckets = linearMax + (64-subBits-1)*subCount
)

// Histogram counts durations. The zero value is empty and ready to use. It is
// not safe for concurrent use; give each goroutine its own and Merge them.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	max    uint64
}

func bucketOf(v uint64) int {
	if v < linearMax {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	m := v >> uint(shift) // in [subCount, 2*subCount)
	return linearMax + (shift-1)*subCount + int(m-subCount)
}

// bounds returns the smallest and largest value that fall in bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < linearMax {
		return uint64(i), uint64(i)
	}
	j := i - linearMax
	shift := uint(j/subCount + 1)
	m := uint64(j%subCount + subCount)
	return m << shift, (m+1)<<shift - 1
}

// Record adds one duration. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	h.n++
	h.max = max(h.max, v)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded duration.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns an estimate of the q-quantile (0 < q <= 1): the midpoint
// of the bucket holding the ceil(q·n)-th smallest value, capped at the
// maximum. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bounds(i)
			return time.Duration(min(lo+(hi-lo)/2, h.max))
		}
	}
	return time.Duration(h.max)
}
