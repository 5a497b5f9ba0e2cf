// Package handoff keeps the writes a replica missed and delivers them to it
// when it is back (hinted handoff).
//
// When a coordinator sends a write to a replica of its key and the replica
// does not acknowledge it in time, the coordinator hands the version to
// this package as a hint for that replica (coordinator.Options.Hints). A
// hint is stored in the node's own engine, under its own key prefix and
// the engine's sync mode, so it is as durable as the data. A periodic pass
// sends each target that the failure detector says is alive its hints,
// oldest first, in batches, under a rate limit, and deletes each hint only
// after the target acknowledged it; a target that fails is retried with a
// capped exponential backoff. The receiving replica merges a hint as it
// merges any replicated version (version.Merge), so delivering one twice,
// or after a newer write, changes nothing.
//
// A node standing in for a down primary as a fallback (sloppy quorum)
// keeps what it receives for that primary with Service.Keep, all or
// nothing, and acknowledges the write only once Keep has stored the hints;
// they are then delivered like any other.
//
// Hints are bounded: per target, in bytes (Options.MaxBytes), and in time
// (Options.Window: a target whose hints have been pending for longer than
// that collects no new ones). What is refused is counted, not queued;
// anti-entropy is what repairs it.
//
// The decisions (what to admit, which targets are due, how much the rate
// allows, when to retry) are made by core, which does no I/O and reads no
// clock; Service is the shell around it that reads and writes the store and
// sends batches.
package handoff

import (
	"sort"
	"time"
)

// limits are the bounds the core enforces (Options with defaults applied).
type limits struct {
	maxBytes   int64         // per target
	window     time.Duration // how long a target's hints may stay pending and still grow
	rate       int64         // bytes per second, over all targets; also the burst
	backoffMin time.Duration
	backoffMax time.Duration
}

// target is what the core knows of one target's hints.
type target struct {
	pending int
	bytes   int64
	// since is when the target's current run of pending hints began: the
	// creation time of the oldest hint it had pending when its queue was
	// last empty. The window counts from it.
	since   time.Time
	refused uint64
	// delivered counts the hints the target acknowledged since this node
	// started; discarded those dropped as unreadable.
	delivered, discarded uint64
	failures             int // consecutive failed deliveries
	retryAt              time.Time
	lastErr              string
	// seenDown: a pass found the target down since its last failure; its
	// return ends the backoff (the failures were its absence).
	seenDown bool
}

// core is the decision logic of hinted handoff: no I/O, no clock (every
// call is given the time). It is not safe for concurrent use.
type core struct {
	lim     limits
	targets map[string]*target
	tokens  float64 // rate budget in bytes; negative after a large batch
	refill  time.Time
}

func newCore(lim limits) *core {
	return &core{lim: lim, targets: map[string]*target{}, tokens: float64(lim.rate)}
}

func (c *core) target(t string) *target {
	tg := c.targets[t]
	if tg == nil {
		tg = &target{}
		c.targets[t] = tg
	}
	return tg
}

// restore counts a hint found in the store at start-up.
func (c *core) restore(t string, size int64, created time.Time) {
	tg := c.target(t)
	if tg.pending == 0 || created.Before(tg.since) {
		tg.since = created
	}
	tg.pending++
	tg.bytes += size
}

// admit decides whether a new hint of size bytes for t is kept, and counts
// it as pending if so, or as refused if not: past the byte bound, or when
// t's hints have been pending for longer than the window (t has been
// unreachable too long; anti-entropy repairs it).
func (c *core) admit(t string, size int64, now time.Time) bool {
	tg := c.target(t)
	if tg.bytes+size > c.lim.maxBytes || (tg.pending > 0 && now.Sub(tg.since) > c.lim.window) {
		tg.refused++
		return false
	}
	if tg.pending == 0 {
		tg.since = now
	}
	tg.pending++
	tg.bytes += size
	return true
}

// admitAll is admit for hints that must be kept together or not at all (a
// fallback's, which it acknowledges only when it keeps them all): it
// admits every one of sizes for t, or none, counting them all as refused.
func (c *core) admitAll(t string, sizes []int64, now time.Time) bool {
	tg := c.target(t)
	var total int64
	for _, size := range sizes {
		total += size
	}
	if tg.bytes+total > c.lim.maxBytes || (tg.pending > 0 && now.Sub(tg.since) > c.lim.window) {
		tg.refused += uint64(len(sizes))
		return false
	}
	if tg.pending == 0 {
		tg.since = now
	}
	tg.pending += len(sizes)
	tg.bytes += total
	return true
}

// unadmit takes back an admitted hint that could not be stored, counting it
// as refused.
func (c *core) unadmit(t string, size int64) {
	tg := c.target(t)
	tg.pending--
	tg.bytes -= size
	tg.refused++
}

// due returns, sorted, the targets with hints pending that alive says are
// up and whose backoff has expired. A target that a pass saw down and now
// sees up is due at once: the failures that grew its backoff (up to
// backoffMax) were its absence, and a returning node must get its hints in
// seconds, not after the backoff.
func (c *core) due(now time.Time, alive func(string) bool) []string {
	var out []string
	for t, tg := range c.targets {
		if tg.pending == 0 {
			continue
		}
		if !alive(t) {
			tg.seenDown = tg.failures > 0 || tg.seenDown
			continue
		}
		if tg.seenDown {
			tg.seenDown, tg.failures, tg.retryAt = false, 0, time.Time{}
		}
		if !now.Before(tg.retryAt) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// budget returns how many bytes the rate limit lets a pass send now (0 or
// less: none). The bucket refills at the rate and holds one second's worth.
func (c *core) budget(now time.Time) int64 {
	if !c.refill.IsZero() && now.After(c.refill) {
		c.tokens += now.Sub(c.refill).Seconds() * float64(c.lim.rate)
		c.tokens = min(c.tokens, float64(c.lim.rate))
	}
	if c.refill.IsZero() || now.After(c.refill) {
		c.refill = now
	}
	return int64(c.tokens)
}

// spend takes n bytes sent from the rate budget (which may go negative: a
// batch is never cut below one hint).
func (c *core) spend(n int64) { c.tokens -= float64(n) }

// delivered records that t acknowledged count hints of size bytes in all
// (and that they were deleted).
func (c *core) delivered(t string, count int, size int64) {
	c.target(t).delivered += uint64(count)
	c.removed(t, count, size)
}

// discarded records that count hints of size bytes for t were dropped
// unread (they could not be decoded).
func (c *core) discarded(t string, count int, size int64) {
	c.target(t).discarded += uint64(count)
	c.removed(t, count, size)
}

// removed records that count hints of size bytes for t are gone.
func (c *core) removed(t string, count int, size int64) {
	tg := c.target(t)
	tg.pending = max(tg.pending-count, 0)
	tg.bytes = max(tg.bytes-size, 0)
	if count > 0 {
		tg.failures, tg.retryAt, tg.lastErr = 0, time.Time{}, ""
	}
}

// accepted records that t acknowledged a delivery at now: it is reachable,
// not down, so the window starts again from now for the hints it still has
// pending (otherwise a target that keeps taking hints but never quite
// drains them would be refused new ones once the window passed).
func (c *core) accepted(t string, now time.Time) {
	if tg := c.target(t); tg.pending > 0 {
		tg.since = now
	}
}

// failed records a failed delivery to t: it is retried after a backoff
// that doubles with each consecutive failure, from backoffMin up to
// backoffMax.
func (c *core) failed(t string, err error, now time.Time) {
	tg := c.target(t)
	tg.failures++
	tg.lastErr = err.Error()
	tg.retryAt = now.Add(c.backoff(tg.failures))
}

func (c *core) backoff(failures int) time.Duration {
	d := c.lim.backoffMin
	for i := 1; i < failures && d < c.lim.backoffMax; i++ {
		d *= 2
	}
	return min(d, c.lim.backoffMax)
}

// Stats is what a node holds for one target.
type Stats struct {
	// Pending and Bytes are the hints kept for the target and their size
	// (keys and values as stored).
	Pending int
	Bytes   int64
	// Refused counts hints not kept since this node started: past the
	// byte bound or the window, or not stored.
	Refused uint64
	// Delivered counts the hints the target acknowledged since this node
	// started; Discarded those dropped because they could not be read.
	Delivered, Discarded uint64
	// LastError is the last delivery failure, cleared by a success.
	LastError string
	// RetryAt is when delivery is tried next after a failure (zero: at the
	// next pass).
	RetryAt time.Time
}

func (c *core) stats() map[string]Stats {
	out := make(map[string]Stats, len(c.targets))
	for t, tg := range c.targets {
		out[t] = Stats{Pending: tg.pending, Bytes: tg.bytes, Refused: tg.refused, Delivered: tg.delivered, Discarded: tg.discarded, LastError: tg.lastErr, RetryAt: tg.retryAt}
	}
	return out
}
