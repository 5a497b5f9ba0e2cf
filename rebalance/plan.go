// Package rebalance moves partitions between nodes when the ring changes:
// a node joins (membership.Config.StreamOnJoin: it enters joining), a
// member is decommissioned or a dead one removed (leaving, then left), a
// dead member is replaced (the new node takes its tokens), or the cluster's
// replication changes (ring.Config.Next). Every case is the same move: the
// ring's Future says who will replicate each partition, and the nodes that
// will and do not yet (the pending owners, to which coordinators already
// send every write) stream those partitions from their current owners.
//
// On every node the Service
//   - streams the partitions this node gains, from every current owner that
//     is up, once every member that is up sees the same ring (KindView);
//   - completes the changes it is responsible for (a joining or leaving node
//     its own; the normal member with the lowest ID that is up a dead
//     leaving node's and a change of the replication) once every pending
//     owner reports what it gains verified in that same ring
//     (KindMoveStatus);
//   - while no change is in progress, hands the partitions it holds but no
//     longer replicates to their owners and drops its copies.
//
// Everything is recomputed from the ring, which membership persists, so a
// node that crashes mid-move resumes where the ring says the move is.
//
// The decision logic (Plan: which partitions are gained, from whom, which
// are due for another try, when the move is done) is pure; the Service
// around it does the I/O through anti-entropy (SyncPartitions, a Merkle
// comparison that copies what differs; DropPartition, a push-only one
// followed by the removal of what was handed over) and membership. Data
// is reached only through those: rebalance reads and writes no store
// itself.
package rebalance

import (
	"slices"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// Plan is a joining node's move: the partitions it gains (those it
// replicates in the ring's Future and not now) and, for each, the sources
// to stream it from (its current owners). A partition is done once it was
// verified against every source the failure detector reports up, and at
// least one: every write acknowledged before the stream began is on W of
// its owners, so one of those that are up holds it (writes since go to the
// joiner directly, as a pending owner).
type Plan struct {
	self     string
	backoff  Backoff
	parts    map[int]*move          // by partition; rebuilt by Update, verifications kept
	verified map[verifiedKey]uint64 // the partition's Removals count when verified, plus 1
	order    []int                  // partitions, ascending

	// Removals, when set, counts the removals of this node's copy of a
	// partition (its drops): a verification stands only while the count
	// is what it was when the verification was recorded. Without it a
	// ring change this node's move did not see (a partition gained, lost
	// and dropped, then gained again) would keep a verification of data
	// since removed.
	Removals func(part int) uint64
}

// stands reports whether part is verified against src and nothing was
// removed since.
func (p *Plan) stands(part int, src string) bool {
	v := p.verified[verifiedKey{part, src}]
	return v != 0 && v == p.removalCount(part)+1
}

func (p *Plan) removalCount(part int) uint64 {
	if p.Removals == nil {
		return 0
	}
	return p.Removals(part)
}

type verifiedKey struct {
	p    int
	peer string
}

type move struct {
	sources  []string
	attempts int       // failed attempts since the last success
	due      time.Time // no attempt before
	lastErr  string
}

// Backoff is the wait before another attempt at a partition that failed:
// Min after the first failure, doubling up to Max.
type Backoff struct{ Min, Max time.Duration }

func (b Backoff) after(attempts int) time.Duration {
	d := b.Min
	for i := 1; i < attempts && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// NewPlan returns the plan of self's move in r (Update it as the ring
// changes).
func NewPlan(self string, r *ring.Ring, b Backoff) *Plan {
	p := &Plan{self: self, backoff: b, parts: map[int]*move{}, verified: map[verifiedKey]uint64{}}
	p.Update(r)
	return p
}

// Update recomputes the gained partitions and their sources for a new ring.
// Verifications of a partition still gained stay valid: they are of the
// data, not of the ring. Those of a partition no longer gained are
// forgotten: this node may drop its copy, and a verification kept for a
// later gain of the same partition would claim data it no longer holds.
func (p *Plan) Update(r *ring.Ring) {
	old := p.parts
	p.parts, p.order = map[int]*move{}, r.Gained(p.self)
	for _, part := range p.order {
		m := &move{sources: r.Preference(part)}
		if o := old[part]; o != nil {
			m.attempts, m.due, m.lastErr = o.attempts, o.due, o.lastErr
		}
		p.parts[part] = m
	}
	for k := range p.verified {
		if p.parts[k.p] == nil {
			delete(p.verified, k)
		}
	}
}

// Partitions returns the gained partitions, ascending.
func (p *Plan) Partitions() []int { return p.order }

// done reports whether partition part is verified against every source
// that is up, and at least one.
func (p *Plan) done(part int, m *move, alive func(string) bool) bool {
	any := false
	for _, src := range m.sources {
		v := p.stands(part, src)
		if !v && alive(src) {
			return false
		}
		any = any || v
	}
	return any
}

// Progress returns how many gained partitions are done, of how many.
func (p *Plan) Progress(alive func(string) bool) (done, total int) {
	for _, part := range p.order {
		if p.done(part, p.parts[part], alive) {
			done++
		}
	}
	return done, len(p.order)
}

// Done reports whether every gained partition is done: the node may become
// normal.
func (p *Plan) Done(alive func(string) bool) bool {
	done, total := p.Progress(alive)
	return done == total
}

// Next returns the next exchange to run: a source that is up and at most
// max partitions due now that still need verifying against it, the source
// with the most such partitions first. It returns "" when nothing is due;
// wait is then how long until something is (0 if nothing ever will be
// without a change: every unverified source is down).
func (p *Plan) Next(now time.Time, alive func(string) bool, max int) (peer string, parts []int, wait time.Duration) {
	byPeer := map[string][]int{}
	for _, part := range p.order {
		m := p.parts[part]
		if p.done(part, m, alive) {
			continue
		}
		if now.Before(m.due) {
			if d := m.due.Sub(now); wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		for _, src := range m.sources {
			if alive(src) && !p.stands(part, src) {
				byPeer[src] = append(byPeer[src], part)
			}
		}
	}
	for src, ps := range byPeer {
		if len(ps) > len(parts) || len(ps) == len(parts) && src < peer {
			peer, parts = src, ps
		}
	}
	if peer == "" {
		return "", nil, wait
	}
	return peer, parts[:min(len(parts), max)], 0
}

// Result records an exchange with peer of the partitions asked: those
// verified are, the others are tried again after a backoff.
func (p *Plan) Result(peer string, asked, verified []int, err error, now time.Time) {
	for _, part := range asked {
		m := p.parts[part]
		if slices.Contains(verified, part) {
			p.verified[verifiedKey{part, peer}] = p.removalCount(part) + 1
			if m != nil {
				m.attempts, m.lastErr = 0, ""
			}
			continue
		}
		if m == nil {
			continue
		}
		m.attempts++
		m.due = now.Add(p.backoff.after(m.attempts))
		if err != nil {
			m.lastErr = peer + ": " + err.Error()
		}
	}
}

// LastError returns the latest failure of a partition not yet done ("" if
// none).
func (p *Plan) LastError() string {
	for _, part := range p.order {
		if e := p.parts[part].lastErr; e != "" {
			return e
		}
	}
	return ""
}
