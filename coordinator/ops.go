package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// Put writes value under key. ctx is the causal context the client read
// (nil for a blind write that supersedes what the coordinating replica
// holds). w is the write quorum (a number or One/Quorum/All; Default for the
// configured default). It returns the object as stored by the coordinating
// replica.
func (c *Coordinator) Put(ctx context.Context, key, value []byte, causal version.Clock, w int) (*version.Object, error) {
	return c.PutAt(ctx, key, value, causal, Levels{W: w})
}

// PutAt is Put at the write levels of lv (W and PW; R and PR are unused).
// With PW set, the write needs that many primaries among its W
// acknowledgements; it is refused before anything is written when fewer
// primaries are up (a QuorumError wrapping ErrTooFewPrimaries), and fails
// with a QuorumError (Primaries set) when fewer acknowledge in time, in
// which case, as with an unmet W, it may still have been applied.
func (c *Coordinator) PutAt(ctx context.Context, key, value []byte, causal version.Clock, lv Levels) (*version.Object, error) {
	start := time.Now()
	obj, err := c.write(ctx, writeRequest{key: key, value: value, hasCtx: causal != nil, ctx: causal, w: lv.W, pw: lv.PW})
	c.observe(ctx, OpPut, lv.W, start, err)
	return obj, err
}

// Delete writes a tombstone for key, with the same rules as Put.
func (c *Coordinator) Delete(ctx context.Context, key []byte, causal version.Clock, w int) (*version.Object, error) {
	return c.DeleteAt(ctx, key, causal, Levels{W: w})
}

// DeleteAt is Delete at the write levels of lv, with the rules of PutAt.
func (c *Coordinator) DeleteAt(ctx context.Context, key []byte, causal version.Clock, lv Levels) (*version.Object, error) {
	start := time.Now()
	obj, err := c.write(ctx, writeRequest{key: key, deleted: true, hasCtx: causal != nil, ctx: causal, w: lv.W, pw: lv.PW})
	c.observe(ctx, OpDelete, lv.W, start, err)
	return obj, err
}

// writeIDKey is the context key of WithWriteID.
type writeIDKey struct{}

// WithWriteID returns ctx carrying the client's name for a write (0: none;
// a client picks it at random and sends it again with every attempt of the
// write). Put and Delete under such a context are applied once: a replica
// that already holds the write does not store it again, and two attempts
// stored by two replicas become one sibling when their states meet (see
// version.Object.WriteOnce). The ID travels with a forwarded write.
func WithWriteID(ctx context.Context, id uint64) context.Context {
	return context.WithValue(ctx, writeIDKey{}, id)
}

// WriteIDFrom is the ID WithWriteID put in ctx, 0 when none.
func WriteIDFrom(ctx context.Context) uint64 {
	id, _ := ctx.Value(writeIDKey{}).(uint64)
	return id
}

func (c *Coordinator) write(ctx context.Context, req writeRequest) (*version.Object, error) {
	if req.id == 0 {
		req.id = WriteIDFrom(ctx)
	}
	if c.o.IgnoreWriteIDs {
		req.id = 0
	}
	rt, err := c.route(req.key)
	if err != nil {
		return nil, err
	}
	if contains(rt.pref, c.self) {
		return c.coordinateWrite(ctx, req, rt)
	}
	// Levels the coordinating replica would refuse are refused here, with
	// the same error (a forwarded error arrives as text).
	local := c.localDC(rt)
	q, err := c.writeQuorum(req.w, req.pw, rt, local)
	if err != nil {
		return nil, err
	}
	if len(q.dcs) > 0 {
		// LOCAL means this node's datacenter, wherever the write is
		// coordinated.
		req.dc = local
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// Not a replica: forward to one, alive ones first, of this node's
	// datacenter first. Another replica is tried only when the request
	// provably never reached the first (it could not be sent): a replica
	// that got it may still apply it, and a second coordinator would apply
	// it again (two siblings for one write).
	var last error
	for _, node := range c.forwardOrder(rt, local) {
		addr, ok := c.cluster.Addr(node)
		if !ok {
			continue
		}
		// A replica that died but is not yet marked down must not eat
		// the whole request's time: each attempt gets half of what is
		// left, so there is time to try another when the first could
		// not even be reached.
		actx, cancel := ctx, context.CancelFunc(func() {})
		if d, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithTimeout(ctx, time.Until(d)/2)
		}
		reply, err := c.tr.Call(actx, addr, kindCoordinate, encodeWrite(req))
		cancel()
		if err == nil {
			c.m.forwarded.Add(1)
			return version.DecodeObject(reply)
		}
		last = err
		switch {
		case isRemote(err) && strings.Contains(err.Error(), notReplicaRefusal):
			// Its ring no longer makes it a replica (a node leaving, a
			// change not yet seen here): refused before anything was
			// written, so another replica may take it.
			continue
		case isRemote(err):
			// The replica answered with an error (a quorum failure,
			// say): its outcome is its own to report.
			c.m.forwarded.Add(1)
			return nil, err
		case !errors.Is(err, transport.ErrNotSent) || ctx.Err() != nil:
			c.m.forwarded.Add(1)
			c.m.forwardFailures.Add(1)
			return nil, fmt.Errorf("forward write of %q to %s: %w: %w", req.key, node, ErrUnknownOutcome, err)
		}
	}
	c.m.forwardFailures.Add(1)
	return nil, fmt.Errorf("forward write of %q: no replica reachable: %w", req.key, last)
}

// coordinateWrite runs on a primary of the key: stamp, store locally,
// send to the key's other targets (primaries, and fallbacks standing in
// for those that are down) and wait for W acknowledgements, PW of them
// from primaries (this one counts as both).
//
// A blind write (no client context) is stamped with the merged context of
// min(W, default R) targets (writeContext), not just this one's: a
// replica that missed an acknowledged write would otherwise make the new
// write concurrent with it, and an older value would survive beside it.
//
// Datacenter levels count for the datacenter the request names (req.dc,
// set by the node that forwarded it), else for this node's.
func (c *Coordinator) coordinateWrite(ctx context.Context, req writeRequest, rt route) (*version.Object, error) {
	local := req.dc
	if local == "" {
		local = c.localDC(rt)
	}
	need, err := c.writeQuorum(req.w, req.pw, rt, local)
	if err != nil {
		return nil, err
	}
	var causal version.Clock
	if req.hasCtx {
		causal = req.ctx
		if causal == nil {
			causal = version.Clock{}
		}
		if err := c.learnContext(ctx, req.key, causal, rt, need); err != nil {
			return nil, err
		}
	} else {
		if !req.deleted && c.checkable(need, rt) {
			obj, again, learned, err := c.checkedWrite(ctx, replica.Write{Key: req.key, Value: req.value, ID: req.id}, need, rt)
			if !again {
				return obj, err
			}
			causal = learned // what the targets hold, learned: no read
		}
		if causal == nil {
			if causal, err = c.writeContext(ctx, req.key, rt, need); err != nil {
				return nil, err
			}
		}
	}
	// The other targets get the new version as soon as it is stamped, in
	// parallel with the local write and its fsync: the write's latency is
	// the slower of the two, not their sum.
	var results chan ack
	var sent fanout
	var stamped func(*version.Object)
	if len(rt.targets) > 1 || len(rt.pending) > 0 {
		results = make(chan ack, len(rt.targets))
		stamped = func(obj *version.Object) { sent = c.replicate(req.key, obj, rt, need, results) }
	}
	obj, err := c.store.CoordinateThen(replica.Write{Key: req.key, Value: req.value, Ctx: causal, Deleted: req.deleted, ID: req.id, Blind: !req.hasCtx}, c.o.Now().UnixNano(), stamped)
	if err != nil && sent.all == 0 && (stamped != nil || isRefusal(err)) {
		// Refused before anything was stamped (an oversized object, a bad
		// context): nothing was sent, so no quorum can make up for it. The
		// client's error, not a quorum failure.
		return nil, err
	}
	if err == nil && need.metLocally() {
		return obj, nil
	}
	var bound waitBound
	if sent.all > 0 {
		// Bound the wait for the other targets (the local write needed
		// no timer).
		bound.start(ctx, c.o.Timeout)
		defer bound.stop()
	}
	acks, qerr := c.awaitAcks(ctx, &bound, need, err, sent, results, len(rt.pref))
	if qerr != nil {
		return nil, qerr
	}
	if err != nil {
		// Enough other targets took it, but there is no stored object to
		// answer with.
		return nil, &QuorumError{Op: "write", Needed: need.w, Answered: acks, Replicas: len(rt.pref), Last: err}
	}
	return obj, nil
}

// quorum is what a write waits for: w acknowledgements, pw of them from
// primaries, and for a datacenter level (dcs set), dcs[i].n of them from
// the targets in datacenter dcs[i].dc (w is then their sum).
type quorum struct {
	w, pw int
	dcs   []dcNeed
	// level is the write level W resolved from (Default replaced by the
	// configured default), and selfDC this node's datacenter, whose
	// count its own acknowledgement adds to.
	level  int
	selfDC string
}

// met reports whether acks acknowledgements, primaryAcks of them from
// primaries and dcAcks[i] from the datacenter of dcs[i], meet q.
func (q quorum) met(acks, primaryAcks int, dcAcks []int) bool {
	if acks < q.w || primaryAcks < q.pw {
		return false
	}
	for i, d := range q.dcs {
		if dcAcks[i] < d.n {
			return false
		}
	}
	return true
}

// metLocally reports whether this node's own acknowledgement meets q.
func (q quorum) metLocally() bool {
	if q.w > 1 || q.pw > 1 {
		return false
	}
	for _, d := range q.dcs {
		if d.n > 1 || d.dc != q.selfDC {
			return false
		}
	}
	return true
}

// writeQuorum resolves a write's W and PW for its route, datacenter levels
// for the local datacenter local, refusing a PW that more primaries than
// are up.
func (c *Coordinator) writeQuorum(w, pw int, rt route, local string) (quorum, error) {
	q := quorum{level: w, selfDC: c.localDC(rt)}
	if q.level == Default {
		q.level = c.o.W
	}
	nd, err := resolveLevel("write", w, c.o.W, rt, local)
	if err != nil {
		return q, err
	}
	q.w, q.dcs = nd.count, nd.dcs
	if q.pw, err = resolvePrimaries("write", pw, rt.n, len(rt.pref)); err != nil {
		return q, err
	}
	return q, checkPrimariesUp("write", q.pw, c.primariesUp(rt.pref), len(rt.pref), rt.n)
}

// isRefusal reports whether a local write error refuses the write itself
// (so that no replica would take it) rather than reporting a failure of
// this replica's engine.
func isRefusal(err error) bool {
	for _, target := range []error{version.ErrObjectTooLarge, version.ErrUnknownContext, version.ErrCounterExhausted,
		version.ErrBadActor, storage.ErrKeyTooLarge, storage.ErrValueTooLarge} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// writeContext is the causal context a blind write at quorum w is stamped
// with: the merge of what min(w, default R) replicas hold for the key, this
// one first. With R + W > N for the writes before it, that merge covers
// every write acknowledged before this one began, so the new write
// supersedes them all instead of becoming their sibling. The merged state
// is also applied to the local replica, so that it holds every version the
// context covers. At w = 1 (or R = 1) it is nil: the write supersedes what
// this replica holds, at no extra cost.
//
// For a datacenter level the read has the write's own datacenter
// requirements (a LOCAL_QUORUM write reads a majority of the local
// replicas, never waiting on another datacenter), so the promise holds
// per datacenter: among the writes at that level of the same datacenter.
func (c *Coordinator) writeContext(ctx context.Context, key []byte, rt route, q quorum) (version.Clock, error) {
	r, _ := resolve("read", Default, c.o.R, rt.n, rt.n)
	plan := readPlan{rt: rt, r: min(r, q.w, len(rt.targets))}
	if len(q.dcs) > 0 {
		plan.r, plan.dcs = q.w, q.dcs
	}
	if r <= 1 || plan.r <= 1 {
		return nil, nil
	}
	fromPrimaries(&plan, q)
	merged, err := c.learn(ctx, key, plan)
	if err != nil {
		return nil, fmt.Errorf("blind write of %q: %w", key, err)
	}
	if merged == nil {
		return nil, nil // no replica asked has the key
	}
	return merged.Context.Clone(), nil
}

// learnContext prepares a write with a client context: when the context
// names writes this replica has not seen (it is behind the replica the
// client read from), it first learns what a read quorum holds, and if that
// is not enough, what every replica holds. The replica then admits the
// context against that state (version.Object.AdmitContext): an actor no
// replica knows is refused, and a counter ahead of every replica is
// lowered, so the write supersedes exactly what the client saw — never a
// version no replica has.
//
// For a datacenter level both reads keep to the level's datacenters (a
// LOCAL write learns from the local ones only), so that it never waits on
// a datacenter it does not count.
func (c *Coordinator) learnContext(ctx context.Context, key []byte, causal version.Clock, rt route, q quorum) error {
	cur, err := c.store.Get(key)
	if err != nil {
		return fmt.Errorf("write of %q: read the local version: %w", key, err)
	}
	var have version.Clock
	if cur != nil {
		have = cur.Context
	}
	if have.Descends(causal) {
		return nil
	}
	// A read quorum first; when the context is still ahead of what it
	// holds (the client read a write that reached only a minority, or one
	// still being replicated), every replica: the write must supersede
	// what the client saw, or a deleted value would come back. Only a
	// context ahead of every replica (forged, or naming a write no replica
	// kept) is then lowered or refused by the replica.
	//
	// The second read needs every primary (of the level's datacenters):
	// what the client saw may be on one primary only, and a fallback
	// standing in for it does not hold it. So while a primary does not
	// answer, the write is refused.
	r, _ := resolve("read", Default, c.o.R, rt.n, rt.n)
	plans := [2]readPlan{{rt: rt, r: min(max(r, 2), len(rt.targets))}, {rt: rt, r: len(rt.targets), pr: len(rt.pref)}}
	if len(q.dcs) > 0 {
		plans = [2]readPlan{{rt: rt}, {rt: rt}}
		for _, d := range q.dcs {
			in := rt.targetsIn(d.dc)
			first, all := d, d
			first.n, all.n = min(max(d.n, 2), in), in
			plans[0].dcs, plans[0].r = append(plans[0].dcs, first), plans[0].r+first.n
			plans[1].dcs, plans[1].r = append(plans[1].dcs, all), plans[1].r+all.n
			plans[1].prDC = append(plans[1].prDC, rt.primariesIn(d.dc))
		}
	}
	fromPrimaries(&plans[0], q) // as in writeContext
	for i, plan := range plans {
		merged, err := c.learn(ctx, key, plan)
		if err != nil {
			return fmt.Errorf("write of %q: its context names writes this replica has not seen, and reading %d replicas failed: %w", key, plan.r, err)
		}
		if merged != nil {
			have = have.Merge(merged.Context)
		}
		if have.Descends(causal) || i == len(plans)-1 {
			return nil
		}
	}
	return nil
}

// fromPrimaries makes the read that prepares a write under strict quorum
// (q.pw > 0) take all its answers from primaries (for a datacenter level,
// all those of each datacenter): an acknowledged strict write is on PW
// primaries, and only primaries are sure to hold it; a fallback's answer
// counted instead could leave it out, and the new write would then be its
// sibling instead of superseding it.
func fromPrimaries(plan *readPlan, q quorum) {
	if q.pw <= 0 {
		return
	}
	if len(plan.dcs) == 0 {
		plan.pr = plan.r
		return
	}
	plan.prDC = make([]int, len(plan.dcs))
	for i, d := range plan.dcs {
		plan.prDC[i] = d.n
	}
}

// learn reads key as plan says (this node first) and merges what the
// targets hold into the local replica, returning the merge (nil when none
// has the key).
func (c *Coordinator) learn(ctx context.Context, key []byte, plan readPlan) (*version.Object, error) {
	merged, localCurrent, err := c.read(ctx, key, plan)
	if err != nil {
		return nil, fmt.Errorf("read the replicas' versions first: %w", err)
	}
	if merged == nil || localCurrent {
		return merged, nil // nothing to merge into the local replica
	}
	if _, _, err := c.store.Apply(key, merged); err != nil {
		return nil, fmt.Errorf("store the replicas' versions: %w", err)
	}
	return merged, nil
}

// waitBound bounds a request's waits without a context of its own (a
// context with a deadline costs a timer, an allocation and, under a
// cancellable parent, a registration with it): the caller selects on
// ctx.Done() and timeout, which fires Timeout after start when ctx has no
// deadline (withTimeout's rule), and stays ready once it has fired.
type waitBound struct {
	started, expired bool
	timer            *time.Timer
	timeout          <-chan time.Time
}

// closedTime is a ready channel for an expired waitBound.
var closedTime = func() <-chan time.Time {
	ch := make(chan time.Time)
	close(ch)
	return ch
}()

func (b *waitBound) start(ctx context.Context, timeout time.Duration) {
	b.started = true
	if _, ok := ctx.Deadline(); !ok {
		b.timer = time.NewTimer(timeout)
		b.timeout = b.timer.C
	}
}

// expire records that the wait ended (ctx.Done() or timeout was ready).
func (b *waitBound) expire() {
	b.expired = true
	b.timeout = closedTime
}

func (b *waitBound) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

// err is why the wait ended: ctx's error, else the timeout's.
func (b *waitBound) err(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// ack is one target's answer to a write it was sent.
type ack struct {
	err     error
	primary bool   // the target is a primary, not a fallback
	dc      string // the target's datacenter, when the write's level counts per datacenter
}

// fanout counts the targets a version was sent to, the primaries among
// them, and for a datacenter level those in each datacenter of the
// quorum's dcs (dcs[i] for need.dcs[i]).
type fanout struct {
	all, primaries int
	dcs            []int
}

// add counts one target in datacenter dc for q.
func (f *fanout) add(q quorum, primary bool, dc string) {
	f.all++
	if primary {
		f.primaries++
	}
	if len(q.dcs) == 0 {
		return
	}
	if f.dcs == nil {
		f.dcs = make([]int, len(q.dcs))
	}
	if i := dcIndex(q.dcs, dc); i >= 0 {
		f.dcs[i]++
	}
}

// targetDC is the datacenter of a write's target, when q counts per
// datacenter ("" otherwise: no lookup on the common path).
func targetDC(q quorum, rt route, node string) string {
	if len(q.dcs) == 0 {
		return ""
	}
	return rt.rg.DC(node)
}

// awaitAcks waits until the write's quorum is met: the local replica (a
// primary; localErr nil) and those of the sent replication requests
// answering on results. It gives up with a QuorumError once the targets
// still to answer cannot meet it, or when ctx ends. It returns the
// acknowledgements counted.
//
// The wait ends with ctx, or when bound's timeout fires (bound may be
// unstarted: ctx alone bounds it).
func (c *Coordinator) awaitAcks(ctx context.Context, bound *waitBound, need quorum, localErr error, sent fanout, results <-chan ack, replicas int) (int, error) {
	t := newTally(need, localErr, sent)
	for !t.done() {
		// Answers already in count even when ctx has ended meanwhile: a
		// batch waits for its keys one after another under one deadline,
		// and select would otherwise pick at random between the two.
		select {
		case a := <-results:
			t.count(a)
			continue
		default:
		}
		select {
		case a := <-results:
			t.count(a)
		case <-ctx.Done():
			t.last = ctx.Err()
			return t.acks, t.failure(replicas)
		case <-bound.timeout:
			t.last = context.DeadlineExceeded
			return t.acks, t.failure(replicas)
		}
	}
	if !t.met() {
		return t.acks, t.failure(replicas)
	}
	return t.acks, nil
}

// tally counts a write's acknowledgements against its quorum.
type tally struct {
	need              quorum
	acks, primaryAcks int
	dcAcks            []int  // per need.dcs
	pending           fanout // sent, not yet answered
	last              error
}

// newTally starts counting for need: the local replica's acknowledgement
// (localErr nil) and the pending answers of the targets sent to.
func newTally(need quorum, localErr error, sent fanout) *tally {
	t := &tally{need: need, pending: sent, last: localErr}
	if len(need.dcs) > 0 {
		t.dcAcks = make([]int, len(need.dcs))
		t.pending.dcs = make([]int, len(need.dcs))
		copy(t.pending.dcs, sent.dcs)
	}
	if localErr == nil {
		t.acks, t.primaryAcks = 1, 1
		if i := dcIndex(need.dcs, need.selfDC); i >= 0 {
			t.dcAcks[i]++
		}
	}
	return t
}

func (t *tally) count(a ack) {
	t.pending.all--
	if a.primary {
		t.pending.primaries--
	}
	i := dcIndex(t.need.dcs, a.dc)
	if i >= 0 {
		t.pending.dcs[i]--
	}
	if a.err != nil {
		t.last = a.err
		return
	}
	t.acks++
	if a.primary {
		t.primaryAcks++
	}
	if i >= 0 {
		t.dcAcks[i]++
	}
}

func (t *tally) met() bool { return t.need.met(t.acks, t.primaryAcks, t.dcAcks) }

// done reports whether the quorum is met or can no longer be.
func (t *tally) done() bool { return t.met() || t.unmet(true) != nil }

// unmet returns the first requirement of the quorum that is not met, as
// the QuorumError the write fails with, or nil. With withPending, the
// acknowledgements still pending count as if they came (so it reports
// what can no longer be met): each datacenter of a datacenter level, then
// PW, then W. Without (at the deadline): each datacenter, W, then PW.
func (t *tally) unmet(withPending bool) *QuorumError {
	p := t.pending
	if !withPending {
		p = fanout{dcs: make([]int, len(t.need.dcs))}
	}
	for i, d := range t.need.dcs {
		if t.dcAcks[i]+p.dcs[i] < d.n {
			return &QuorumError{Op: "write", DC: d.dc, Needed: d.n, Answered: t.dcAcks[i], Replicas: d.placed, Last: t.last}
		}
	}
	// The errors are built only when returned: done() asks on every ack.
	pwUnmet := t.primaryAcks+p.primaries < t.need.pw
	wUnmet := t.acks+p.all < t.need.w
	switch {
	case withPending && pwUnmet, !withPending && pwUnmet && !wUnmet:
		return &QuorumError{Op: "write", Primaries: true, Needed: t.need.pw, Answered: t.primaryAcks, Last: t.last}
	case wUnmet:
		return &QuorumError{Op: "write", Needed: t.need.w, Answered: t.acks, Last: t.last}
	}
	return nil
}

// failure is the QuorumError of a write whose quorum was not met: about
// the first requirement that can no longer be met (the request stops as
// soon as one cannot), else, at the deadline, about the first not met.
func (t *tally) failure(replicas int) error {
	qe := t.unmet(true)
	if qe == nil {
		qe = t.unmet(false)
	}
	if qe == nil {
		qe = &QuorumError{Op: "write", Needed: t.need.w, Answered: t.acks, Last: t.last}
	}
	if qe.DC == "" {
		qe.Replicas = replicas
	}
	return qe
}

// send calls node with a peer message, failing fast for unknown nodes.
func (c *Coordinator) send(ctx context.Context, node string, kind uint8, payload []byte) error {
	_, err := c.call(ctx, node, kind, payload)
	return err
}

func (c *Coordinator) call(ctx context.Context, node string, kind uint8, payload []byte) ([]byte, error) {
	addr, ok := c.cluster.Addr(node)
	if !ok {
		return nil, fmt.Errorf("node %s has no known address", node)
	}
	return c.tr.Call(ctx, addr, kind, payload)
}

func isRemote(err error) bool { return errors.Is(err, transport.ErrRemote) }

// readPlan is how a read of one key goes: the key's route, the read
// quorums resolved against it (r nodes, pr of them primaries), whether
// this read asks every target (a ReadRepairChance draw), and whether the
// local replica's answer is the whole answer. That is the common read at
// R=1 on a replica, with nothing to merge or repair; only when the local
// read fails does the read ask the other targets.
//
// For a datacenter level, dcs says how many answers each datacenter must
// give (r is their sum), and the read asks only the targets of those
// datacenters for them: a LOCAL read never waits on another datacenter.
// This node's datacenter is the local one (reads are not forwarded).
type readPlan struct {
	rt    route
	r, pr int
	dcs   []dcNeed
	// prDC, when set, is how many of the answers from each datacenter of
	// dcs must come from primaries (a read that prepares a write).
	prDC      []int
	full      bool
	localOnly bool
}

func (c *Coordinator) readPlan(key []byte, lv Levels) (readPlan, error) {
	rt, err := c.route(key)
	if err != nil {
		return readPlan{}, err
	}
	nd, err := resolveLevel("read", lv.R, c.o.R, rt, c.localDC(rt))
	if err != nil {
		return readPlan{}, err
	}
	r := nd.count
	pr, err := resolvePrimaries("read", lv.PR, rt.n, len(rt.pref))
	if err != nil {
		return readPlan{}, err
	}
	if err := checkPrimariesUp("read", pr, c.primariesUp(rt.pref), len(rt.pref), rt.n); err != nil {
		return readPlan{}, err
	}
	full := c.fullRead()
	// A datacenter level of one answer (LOCAL_ONE, or EACH_QUORUM on a
	// ring with one datacenter of one replica) is met by this node's when
	// it is in that datacenter.
	localDCs := len(nd.dcs) == 0 || len(nd.dcs) == 1 && nd.dcs[0].dc == c.localDC(rt)
	localOnly := r == 1 && pr <= 1 && localDCs && contains(rt.pref, c.self) && (!full || len(rt.pref) == 1)
	return readPlan{rt: rt, r: r, pr: pr, dcs: nd.dcs, full: full, localOnly: localOnly}, nil
}

// GetLive is Get for a caller that wants only the value a single-value read
// answers (version.LiveValue), as Redis GET does. On the local read at R=1
// it picks the value from the stored bytes without decoding the object.
func (c *Coordinator) GetLive(ctx context.Context, key []byte, r int) ([]byte, bool, error) {
	return c.GetLiveAt(ctx, key, Levels{R: r})
}

// GetLiveAt is GetLive at the read levels of lv (R and PR).
func (c *Coordinator) GetLiveAt(ctx context.Context, key []byte, lv Levels) (value []byte, found bool, err error) {
	start := time.Now()
	defer func() { c.observe(ctx, OpGet, lv.R, start, err) }()
	plan, err := c.readPlan(key, lv)
	if err != nil {
		return nil, false, err
	}
	if plan.localOnly {
		if value, found, err := c.store.GetLive(key); err == nil {
			return value, found, nil
		}
		plan.localOnly = false // the local read failed: ask the others
	}
	if c.combinable(plan) {
		return c.getLiveCombined(ctx, key, plan)
	}
	return c.getLiveAlone(ctx, key, plan)
}

// readReply is one target's answer to a read.
type readReply struct {
	node    string
	primary bool   // node is a primary, not a fallback
	dc      string // node's datacenter, for a datacenter level
	obj     *version.Object
	err     error
}

// Get reads key with read quorum r. It asks R targets (the local replica
// first, then alive primaries in preference order, then the fallbacks
// standing in for primaries that are down; more as any fail), or every
// target on a ReadRepairChance fraction of reads, and returns the merge of
// the answers (nil when none has the key). Primaries whose answer is older
// than the merge of all answers are repaired in the background.
func (c *Coordinator) Get(ctx context.Context, key []byte, r int) (*version.Object, error) {
	return c.GetAt(ctx, key, Levels{R: r})
}

// GetAt is Get at the read levels of lv: R answers, PR of them from
// primaries. A PR above the primaries up is refused before anything is
// read (a QuorumError wrapping ErrTooFewPrimaries).
func (c *Coordinator) GetAt(ctx context.Context, key []byte, lv Levels) (obj *version.Object, err error) {
	start := time.Now()
	defer func() { c.observe(ctx, OpGet, lv.R, start, err) }()
	plan, err := c.readPlan(key, lv)
	if err != nil {
		return nil, err
	}
	if c.combinable(plan) {
		obj, err = c.getCombined(ctx, key, plan)
	} else {
		obj, err = c.get(ctx, key, plan)
	}
	if err == nil {
		c.countSiblings(obj)
	}
	return obj, err
}

func (c *Coordinator) get(ctx context.Context, key []byte, plan readPlan) (*version.Object, error) {
	merged, _, err := c.read(ctx, key, plan)
	return merged, err
}

// readOrder is the order a read asks nodes in: this node when it is a
// primary, the other primaries that are up, the fallbacks standing in for
// those that are down, then the targets the failure detector says are
// down, and last the down primaries that a fallback replaced (the failure
// detector may be wrong).
func (c *Coordinator) readOrder(rt route) []readReply {
	order := make([]readReply, 0, len(rt.pref)+len(rt.targets))
	add := func(node string, primary bool) {
		for _, o := range order {
			if o.node == node {
				return
			}
		}
		order = append(order, readReply{node: node, primary: primary})
	}
	if contains(rt.pref, c.self) {
		add(c.self, true)
	}
	for _, pass := range []func(ring.Target) bool{
		func(tg ring.Target) bool { return tg.For == "" && c.healthy(tg.Node) },
		func(tg ring.Target) bool { return tg.For != "" && c.healthy(tg.Node) },
		func(tg ring.Target) bool { return !c.healthy(tg.Node) },
	} {
		for _, tg := range rt.targets {
			if pass(tg) {
				add(tg.Node, tg.For == "")
			}
		}
	}
	for _, tg := range rt.targets {
		if tg.For != "" {
			add(tg.For, true)
		}
	}
	return order
}

// read is get, also reporting whether the local replica answered with a
// state that holds everything merged does (so that nothing need be merged
// into it).
func (c *Coordinator) read(ctx context.Context, key []byte, plan readPlan) (merged *version.Object, localCurrent bool, err error) {
	if plan.localOnly {
		obj, err := c.store.Get(key)
		if err == nil {
			if obj != nil && obj.Empty() {
				obj = nil
			}
			return obj, true, nil
		}
	}
	rs := c.newReadState(key, plan)
	var bound waitBound // the read's wait, from its first one
	var spec *time.Timer
	want := plan.r
	if plan.full {
		want = max(want, len(plan.rt.targets))
	}
	if len(plan.dcs) > 0 && !plan.full {
		for rs.askMore() {
		}
	} else {
		for rs.asked < want && rs.ask(rs.nextAsk(false)) {
		}
	}
	for !rs.met() {
		for rs.askMore() {
		}
		if rs.met() || rs.outstanding == 0 {
			break
		}
		if !bound.started {
			bound.start(ctx, c.o.Timeout)
			defer bound.stop()
		}
		var speculate <-chan time.Time
		if rs.nextUseful() >= 0 {
			// A target that died but is not yet marked down would hold
			// the read until its timeout: past a short delay, ask one more.
			if spec == nil {
				spec = time.NewTimer(c.o.SpeculativeDelay)
				defer spec.Stop()
			} else {
				spec.Reset(c.o.SpeculativeDelay)
			}
			speculate = spec.C
		}
		var ended bool
		select {
		case rep := <-rs.replies:
			rs.outstanding--
			if rep.primary {
				rs.outstandingPrimaries--
			}
			if i := dcIndex(plan.dcs, rep.dc); i >= 0 {
				rs.outstandingDC[i]--
				if rep.primary {
					rs.outstandingPrimDC[i]--
				}
			}
			rs.got = append(rs.got, rep)
			rs.tally(rep)
		case <-speculate:
			// Always a remote target: the local one is asked first.
			if !rs.askMore() {
				rs.ask(rs.nextUseful())
			}
		case <-ctx.Done():
			ended = true
		case <-bound.timeout:
			ended = true
		}
		if ended {
			bound.expire()
			rs.last = bound.err(ctx)
			if rs.ok+rs.weak < plan.r || rs.okPrimaries < plan.pr || len(plan.dcs) > 0 {
				c.finishRead(key, rs)
				return nil, false, rs.failure()
			}
			// A primary asked never answered (down, not yet detected):
			// the fallbacks' not-found answers stand, as a sloppy read.
			rs.outstandingPrimaries = 0
		}
		if bound.expired && rs.met() {
			break
		}
	}
	// The local replica, when asked, answered synchronously.
	for _, rep := range rs.got {
		if rep.node == c.self {
			localCurrent = rep.err == nil && rep.obj.Descends(rs.merged)
			break
		}
	}
	c.finishRead(key, rs)
	if !rs.met() {
		return nil, false, rs.failure()
	}
	merged = rs.merged
	if merged != nil && merged.Empty() {
		merged = nil
	}
	return merged, localCurrent, nil
}

// primariesIn is how many answers from the datacenter of dcs[i] must come
// from primaries.
func (p readPlan) primariesIn(i int) int {
	if p.prDC == nil {
		return 0
	}
	return p.prDC[i]
}

// readState is one read in progress: whom it asks, in what order, and the
// answers so far.
type readState struct {
	c                    *Coordinator
	key                  []byte
	plan                 readPlan
	order                []readReply // node and primary set
	askedAt              []bool
	asked                int
	replies              chan readReply
	rctx                 context.Context // remote reads, which outlive the request
	cancel               context.CancelFunc
	outstanding          int
	outstandingPrimaries int
	got                  []readReply
	ok, okPrimaries      int
	// weak counts fallbacks' not-found answers (see tally).
	weak                int
	okDC, outstandingDC []int // per plan.dcs
	// primaries answered and in flight, per plan.dcs
	okPrimDC, outstandingPrimDC []int
	merged                      *version.Object
	last                        error
	// The local replica's answer, once in (local set): the other
	// replicas are then sent a digest read against its hash.
	local     *version.Object
	localHash uint64
	hasLocal  bool
}

func (c *Coordinator) newReadState(key []byte, plan readPlan) *readState {
	order := c.readOrder(plan.rt)
	rs := &readState{
		c: c, key: key, plan: plan, order: order,
		askedAt: make([]bool, len(order)),
		replies: make(chan readReply, len(order)),
		cancel:  func() {},
	}
	if len(plan.dcs) > 0 {
		for i := range order {
			order[i].dc = plan.rt.rg.DC(order[i].node)
		}
		rs.okDC, rs.outstandingDC = make([]int, len(plan.dcs)), make([]int, len(plan.dcs))
		rs.okPrimDC, rs.outstandingPrimDC = make([]int, len(plan.dcs)), make([]int, len(plan.dcs))
	}
	return rs
}

func (rs *readState) met() bool {
	ok := rs.ok
	if rs.outstandingPrimaries == 0 {
		ok += rs.weak
	}
	if ok < rs.plan.r || rs.okPrimaries < rs.plan.pr {
		return false
	}
	for i, d := range rs.plan.dcs {
		if rs.okDC[i] < d.n || rs.okPrimDC[i] < rs.plan.primariesIn(i) {
			return false
		}
	}
	return true
}

// needPrimary reports whether the primaries asked cannot meet PR.
func (rs *readState) needPrimary() bool {
	return rs.okPrimaries+rs.outstandingPrimaries < rs.plan.pr
}

// askMore asks one more target when those in flight cannot meet the
// levels: a primary when PR needs one (and one is left), else the next in
// order. It reports whether it asked one.
//
// For a datacenter level, it asks the next target of a datacenter whose
// answers in flight cannot meet its count, and never a target of a
// datacenter the level does not count.
func (rs *readState) askMore() bool {
	if rs.needPrimary() {
		if i := rs.nextAsk(true); i >= 0 {
			return rs.ask(i)
		}
	}
	if len(rs.plan.dcs) > 0 {
		for i, d := range rs.plan.dcs {
			if rs.okPrimDC[i]+rs.outstandingPrimDC[i] < rs.plan.primariesIn(i) {
				if j := rs.nextAskIn(d.dc, true); j >= 0 {
					return rs.ask(j)
				}
			}
			if rs.okDC[i]+rs.outstandingDC[i] < d.n {
				if j := rs.nextAskIn(d.dc, false); j >= 0 {
					return rs.ask(j)
				}
			}
		}
		return false
	}
	if rs.ok+rs.weak+rs.outstanding < rs.plan.r {
		return rs.ask(rs.nextAsk(false))
	}
	return false
}

// nextAskIn returns the first target in order not asked yet in
// datacenter dc (a primary, if primary is set), or -1.
func (rs *readState) nextAskIn(dc string, primary bool) int {
	for i, o := range rs.order {
		if !rs.askedAt[i] && o.dc == dc && (!primary || o.primary) {
			return i
		}
	}
	return -1
}

// nextUseful returns the target a speculative ask goes to, or -1: the
// next in order, and for a datacenter level the next of a datacenter
// whose count is not met yet.
func (rs *readState) nextUseful() int {
	if len(rs.plan.dcs) == 0 {
		return rs.nextAsk(false)
	}
	for i, d := range rs.plan.dcs {
		if rs.okPrimDC[i] < rs.plan.primariesIn(i) {
			if j := rs.nextAskIn(d.dc, true); j >= 0 {
				return j
			}
		}
		if rs.okDC[i] < d.n {
			if j := rs.nextAskIn(d.dc, false); j >= 0 {
				return j
			}
		}
	}
	return -1
}

// nextAsk returns the first target in order not asked yet (a primary, if
// primary is set), or -1.
func (rs *readState) nextAsk(primary bool) int {
	for i, o := range rs.order {
		if !rs.askedAt[i] && (!primary || o.primary) {
			return i
		}
	}
	return -1
}

// ask asks order[i] (nothing when i < 0) and reports whether it did. The
// local replica answers at once; remote targets answer on replies.
func (rs *readState) ask(i int) bool {
	if i < 0 {
		return false
	}
	rs.askedAt[i] = true
	rs.asked++
	target := rs.order[i]
	if target.node == rs.c.self {
		rep := readReply{node: target.node, primary: target.primary, dc: target.dc}
		rep.obj, rs.localHash, rep.err = rs.c.store.GetHashed(rs.key)
		rs.local, rs.hasLocal = rep.obj, rep.err == nil
		rs.got = append(rs.got, rep)
		rs.tally(rep)
		return true
	}
	if rs.rctx == nil {
		rs.rctx, rs.cancel = context.WithTimeout(context.Background(), rs.c.o.RepairTimeout)
	}
	rs.outstanding++
	if target.primary {
		rs.outstandingPrimaries++
	}
	if i := dcIndex(rs.plan.dcs, target.dc); i >= 0 {
		rs.outstandingDC[i]++
		if target.primary {
			rs.outstandingPrimDC[i]++
		}
	}
	rctx := rs.rctx
	if rs.hasLocal {
		local, hash := rs.local, rs.localHash
		go func() { rs.replies <- rs.c.readOneDigest(rctx, target, rs.key, local, hash) }()
		return true
	}
	go func() { rs.replies <- rs.c.readOne(rctx, target, rs.key) }()
	return true
}

func (rs *readState) tally(rep readReply) {
	if rep.err != nil {
		rs.last = rep.err
		return
	}
	if !rep.primary && rep.obj == nil && len(rs.plan.dcs) == 0 {
		// A fallback that holds nothing for the key: weak evidence (it
		// holds only what was handed off to it), counted only once no
		// primary's answer is in flight. Otherwise a fallback's quick
		// not-found, the coordinator's own above all, would satisfy R
		// while the primary that holds the key is still answering.
		rs.weak++
		return
	}
	rs.ok++
	if rep.primary {
		rs.okPrimaries++
	}
	if i := dcIndex(rs.plan.dcs, rep.dc); i >= 0 {
		rs.okDC[i]++
		if rep.primary {
			rs.okPrimDC[i]++
		}
	}
	rs.merged = mergeReply(rs.merged, rep.obj)
}

func (rs *readState) failure() error {
	placed := len(rs.plan.rt.pref)
	for i, d := range rs.plan.dcs {
		if rs.okDC[i] < d.n {
			return &QuorumError{Op: "read", DC: d.dc, Needed: d.n, Answered: rs.okDC[i], Replicas: d.placed, Last: rs.last}
		}
		if rs.okPrimDC[i] < rs.plan.primariesIn(i) {
			return &QuorumError{Op: "read", DC: d.dc, Primaries: true, Needed: rs.plan.primariesIn(i), Answered: rs.okPrimDC[i], Replicas: d.placed, Last: rs.last}
		}
	}
	if rs.ok < rs.plan.r {
		return &QuorumError{Op: "read", Needed: rs.plan.r, Answered: rs.ok, Replicas: placed, Last: rs.last}
	}
	return &QuorumError{Op: "read", Primaries: true, Needed: rs.plan.pr, Answered: rs.okPrimaries, Replicas: placed, Last: rs.last}
}

// finishRead hands read repair to a background goroutine when answers are
// still outstanding, and otherwise checks inline whether anything needs
// repair (the common case: every target agreed).
func (c *Coordinator) finishRead(key []byte, rs *readState) {
	if rs.outstanding > 0 {
		go c.repair(key, rs.asked, rs.got, rs.replies, rs.cancel)
		return
	}
	rs.cancel()
	c.repairStale(key, rs.got, mergeReplies(rs.got))
}

// repairStale starts read repair when one of the primaries' answers in got
// (all in) is older than the merge of all of them.
func (c *Coordinator) repairStale(key []byte, got []readReply, merged *version.Object) {
	if merged == nil || merged.Empty() {
		return
	}
	for _, rep := range got {
		if stale(rep, merged) {
			go c.repair(key, len(got), got, nil, func() {})
			return
		}
	}
}

// stale reports whether read repair sends merged to the node that gave
// rep: a primary that answered with an older state. Fallbacks are never
// repaired: what they hold beyond their hints would be a copy no hint
// accounts for, kept forever.
func stale(rep readReply, merged *version.Object) bool {
	return rep.primary && rep.err == nil && (rep.obj == nil || !rep.obj.Descends(merged))
}

// mergeReplies merges the successful answers in got.
func mergeReplies(got []readReply) *version.Object {
	var merged *version.Object
	for _, rep := range got {
		if rep.err == nil {
			merged = mergeReply(merged, rep.obj)
		}
	}
	return merged
}

// readOne reads key from target (a readReply with node and primary set).
func (c *Coordinator) readOne(ctx context.Context, target readReply, key []byte) readReply {
	rep := readReply{node: target.node, primary: target.primary, dc: target.dc}
	if target.node == c.self {
		rep.obj, rep.err = c.store.Get(key)
		return rep
	}
	reply, err := c.call(ctx, target.node, kindRead, key)
	if err != nil {
		rep.err = err
		return rep
	}
	if len(reply) == 0 {
		return rep
	}
	rep.obj, rep.err = version.DecodeObject(reply)
	return rep
}

// readOneDigest is readOne for a remote target when this node's state of
// key is local (hash its replica.ObjectHash, 0 when absent): a digest read
// (kindReadDigest), whose "same" answer stands for local itself. A node
// that predates it is sent kindRead.
func (c *Coordinator) readOneDigest(ctx context.Context, target readReply, key []byte, local *version.Object, hash uint64) readReply {
	rep := readReply{node: target.node, primary: target.primary, dc: target.dc}
	reply, err := c.call(ctx, target.node, kindReadDigest, encodeDigestKey(key, hash))
	if unknownKind(err) {
		return c.readOne(ctx, target, key)
	}
	if err != nil {
		rep.err = err
		return rep
	}
	var same bool
	if rep.obj, same, rep.err = decodeDigestAnswer(reply); same {
		rep.obj = local
	}
	return rep
}

// repair waits (bounded) for the answers not yet in, merges everything, and
// sends the merge to each primary that answered with an older state.
func (c *Coordinator) repair(key []byte, asked int, got []readReply, replies <-chan readReply, cancel context.CancelFunc) {
	defer cancel()
	for len(got) < asked {
		got = append(got, <-replies)
	}
	merged := mergeReplies(got)
	if merged == nil || merged.Empty() {
		return
	}
	payload := encodeReplicate(key, merged)
	ctx, done := context.WithTimeout(context.Background(), c.o.RepairTimeout)
	defer done()
	for _, rep := range got {
		if !stale(rep, merged) {
			continue
		}
		var err error
		if rep.node == c.self {
			_, _, err = c.store.Apply(key, merged)
		} else {
			err = c.send(ctx, rep.node, kindReplicate, payload)
		}
		c.m.readRepairs.Add(1)
		if err != nil {
			c.m.readRepairFailures.Add(1)
			c.o.Logf("read repair of %q on %s: %v", key, rep.node, err)
		}
	}
}

// mergeReply folds one replica's answer into the merge so far. The first
// answer is taken as it is (objects are never modified in place), which
// saves a copy on the common path where one or all replicas agree.
func mergeReply(merged, obj *version.Object) *version.Object {
	switch {
	case merged == nil:
		return obj
	case obj == nil || merged == obj:
		return merged
	}
	return version.Merge(merged, obj)
}

// replicate sends a freshly stamped version to the key's other targets:
// primaries get kindReplicate, fallbacks kindHandoff naming the primary
// they stand in for. Each answer goes to results; it returns how many it
// sent to. Replication outlives the request when W is reached early, so it
// runs under its own deadline, not the client's. A target that does not
// acknowledge leaves a hint for the primary it serves.
func (c *Coordinator) replicate(key []byte, obj *version.Object, rt route, q quorum, results chan<- ack) fanout {
	payload := encodeReplicate(key, obj)
	var handoff []byte // the kindHandoff batch of one entry, when needed
	var hkey [][]byte
	if c.o.Hints != nil {
		// The caller's key buffer may be reused once the write answers,
		// which can be before a target's failure is known.
		hkey = [][]byte{bytes.Clone(key)}
	}
	// One deadline for every send of this write (a context and its timer
	// per target cost more than the rest of the send's setup); it is
	// released when the last send returns.
	pending := c.pendingTargets(rt)
	sends := int32(len(pending))
	for _, tg := range rt.targets {
		if tg.Node != c.self {
			sends++
		}
	}
	if sends == 0 {
		return fanout{}
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	var running atomic.Int32
	running.Store(sends)
	sendDone := func() {
		if running.Add(-1) == 0 {
			cancel()
		}
	}
	var sent fanout
	for _, tg := range rt.targets {
		if tg.Node == c.self {
			continue
		}
		kind, msg := kindReplicate, payload
		if tg.For != "" {
			if handoff == nil {
				handoff = encodeReplicateBatch([][]byte{key}, [][]byte{obj.Encode(nil)})
			}
			kind, msg = kindHandoff, encodeHandoff(tg.For, handoff)
		}
		dc := targetDC(q, rt, tg.Node)
		sent.add(q, tg.For == "", dc)
		go func() {
			err := c.send(sctx, tg.Node, kind, msg)
			sendDone()
			c.countAck(err)
			results <- ack{err: err, primary: tg.For == "", dc: dc}
			if missed(err) {
				// Not acknowledged in time: keep it for the primary (after
				// the answer is counted, so the client does not wait).
				c.hint(primaryOf(tg), hkey, []*version.Object{obj})
			}
		}()
	}
	for _, node := range pending {
		go func() {
			err := c.send(sctx, node, kindReplicate, payload)
			sendDone()
			if missed(err) {
				c.hint(node, hkey, []*version.Object{obj})
			}
		}()
	}
	return sent
}

// pendingTargets returns the key's pending owners that its targets do not
// already include (a joining node can stand in as a fallback). A pending
// owner gets every write, so that what is written while it streams the
// partition is not missed, but its answer counts toward no level and the
// client does not wait for it; a failure leaves a hint for it.
func (c *Coordinator) pendingTargets(rt route) []string {
	var out []string
	for _, node := range rt.pending {
		if node == c.self || slices.ContainsFunc(rt.targets, func(tg ring.Target) bool { return tg.Node == node }) {
			continue
		}
		out = append(out, node)
	}
	return out
}

// primaryOf is the primary a target serves: itself, or the one it stands
// in for.
func primaryOf(tg ring.Target) string {
	if tg.For != "" {
		return tg.For
	}
	return tg.Node
}
