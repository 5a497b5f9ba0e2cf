package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

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
	return c.write(ctx, writeRequest{key: key, value: value, hasCtx: causal != nil, ctx: causal, w: w})
}

// Delete writes a tombstone for key, with the same rules as Put.
func (c *Coordinator) Delete(ctx context.Context, key []byte, causal version.Clock, w int) (*version.Object, error) {
	return c.write(ctx, writeRequest{key: key, deleted: true, hasCtx: causal != nil, ctx: causal, w: w})
}

func (c *Coordinator) write(ctx context.Context, req writeRequest) (*version.Object, error) {
	pref, n, err := c.preference(req.key)
	if err != nil {
		return nil, err
	}
	if contains(pref, c.self) {
		return c.coordinateWrite(ctx, req, pref, n)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// Not a replica: forward to one, alive ones first. Another replica is
	// tried only when the request provably never reached the first (it
	// could not be sent): a replica that got it may still apply it, and a
	// second coordinator would apply it again (two siblings for one write).
	var last error
	for _, alive := range []bool{true, false} {
		for _, node := range pref {
			if c.cluster.Alive(node) != alive {
				continue
			}
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
				return version.DecodeObject(reply)
			}
			last = err
			switch {
			case isRemote(err):
				// The replica answered with an error (a quorum failure,
				// say): its outcome is its own to report.
				return nil, err
			case !errors.Is(err, transport.ErrNotSent) || ctx.Err() != nil:
				return nil, fmt.Errorf("forward write of %q to %s: %w: %w", req.key, node, ErrUnknownOutcome, err)
			}
		}
	}
	return nil, fmt.Errorf("forward write of %q: no replica reachable: %w", req.key, last)
}

// coordinateWrite runs on a replica of the key: stamp, store locally, send
// to the other replicas and wait for W acknowledgements (this one counts).
// pref is the key's preference list, which holds this node; n is N.
//
// A blind write (no client context) is stamped with the merged context of
// min(W, default R) replicas (writeContext), not just this one's: a
// replica that missed an acknowledged write would otherwise make the new
// write concurrent with it, and an older value would survive beside it.
func (c *Coordinator) coordinateWrite(ctx context.Context, req writeRequest, pref []string, n int) (*version.Object, error) {
	w, err := resolve("write", req.w, c.o.W, n, len(pref))
	if err != nil {
		return nil, err
	}
	var causal version.Clock
	if req.hasCtx {
		causal = req.ctx
		if causal == nil {
			causal = version.Clock{}
		}
		if err := c.learnContext(ctx, req.key, causal, pref, n); err != nil {
			return nil, err
		}
	} else {
		if causal, err = c.writeContext(ctx, req.key, pref, n, w); err != nil {
			return nil, err
		}
	}
	// The other replicas get the new version as soon as it is stamped, in
	// parallel with the local write and its fsync: the write's latency is
	// the slower of the two, not their sum.
	var results chan error
	sent := 0
	var stamped func(*version.Object)
	if len(pref) > 1 {
		results = make(chan error, len(pref))
		stamped = func(obj *version.Object) { sent = c.replicate(req.key, obj, pref, results) }
	}
	obj, err := c.store.CoordinateThen(req.key, causal, req.value, req.deleted, c.o.Now().UnixNano(), stamped)
	if err != nil && sent == 0 && (stamped != nil || isRefusal(err)) {
		// Refused before anything was stamped (an oversized object, a bad
		// context): nothing was sent, so no quorum can make up for it. The
		// client's error, not a quorum failure.
		return nil, err
	}
	if err == nil && w <= 1 {
		return obj, nil
	}
	if sent > 0 {
		// Bound the wait for the other replicas (the local write needed
		// no timer).
		var cancel context.CancelFunc
		ctx, cancel = c.withTimeout(ctx)
		defer cancel()
	}
	acks, qerr := c.awaitAcks(ctx, w, err, sent, results, len(pref))
	if qerr != nil {
		return nil, qerr
	}
	if err != nil {
		// Enough other replicas took it, but there is no stored object to
		// answer with.
		return nil, &QuorumError{Op: "write", Needed: w, Answered: acks, Replicas: len(pref), Last: err}
	}
	return obj, nil
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
func (c *Coordinator) writeContext(ctx context.Context, key []byte, pref []string, n, w int) (version.Clock, error) {
	r, _ := resolve("read", Default, c.o.R, n, n)
	r = min(r, w)
	if r <= 1 {
		return nil, nil
	}
	merged, err := c.learn(ctx, key, pref, r)
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
func (c *Coordinator) learnContext(ctx context.Context, key []byte, causal version.Clock, pref []string, n int) error {
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
	r, _ := resolve("read", Default, c.o.R, n, n)
	r = min(max(r, 2), len(pref))
	for _, r := range []int{r, len(pref)} {
		merged, err := c.learn(ctx, key, pref, r)
		if err != nil {
			return fmt.Errorf("write of %q: its context names writes this replica has not seen, and reading %d replicas failed: %w", key, r, err)
		}
		if merged != nil {
			have = have.Merge(merged.Context)
		}
		if have.Descends(causal) || r == len(pref) {
			return nil
		}
	}
	return nil
}

// learn reads key from r replicas (this one first) and merges what they
// hold into the local replica, returning the merge (nil when none has the
// key).
func (c *Coordinator) learn(ctx context.Context, key []byte, pref []string, r int) (*version.Object, error) {
	merged, localCurrent, err := c.read(ctx, key, readPlan{pref: pref, r: min(r, len(pref))})
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

// awaitAcks waits until w replicas acknowledged a write: the local one
// (localErr nil) and those of the sent replication requests answering on
// results. It gives up with a QuorumError once the replicas still to answer
// cannot make w, or when ctx ends.
func (c *Coordinator) awaitAcks(ctx context.Context, w int, localErr error, sent int, results <-chan error, replicas int) (int, error) {
	acks, failed := 0, 0
	last := localErr
	if localErr == nil {
		acks = 1
	}
	count := func(err error) {
		if err == nil {
			acks++
		} else {
			failed++
			last = err
		}
	}
	for acks < w && acks+(sent-failed-(acks-boolInt(localErr == nil))) >= w {
		// Answers already in count even when ctx has ended meanwhile: a
		// batch waits for its keys one after another under one deadline,
		// and select would otherwise pick at random between the two.
		select {
		case err := <-results:
			count(err)
			continue
		default:
		}
		select {
		case err := <-results:
			count(err)
		case <-ctx.Done():
			return acks, &QuorumError{Op: "write", Needed: w, Answered: acks, Replicas: replicas, Last: ctx.Err()}
		}
	}
	if acks < w {
		return acks, &QuorumError{Op: "write", Needed: w, Answered: acks, Replicas: replicas, Last: last}
	}
	return acks, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
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

// readPlan is how a read of one key goes: the key's preference list, the
// read quorum resolved against it, whether this read asks every replica (a
// ReadRepairChance draw), and whether the local replica's answer is the
// whole answer. That is the common read at R=1 on a replica, with nothing
// to merge or repair; only when the local read fails does the read ask the
// other replicas.
type readPlan struct {
	pref      []string
	r         int
	full      bool
	localOnly bool
}

func (c *Coordinator) readPlan(key []byte, r int) (readPlan, error) {
	pref, n, err := c.preference(key)
	if err != nil {
		return readPlan{}, err
	}
	if r, err = resolve("read", r, c.o.R, n, len(pref)); err != nil {
		return readPlan{}, err
	}
	full := c.fullRead()
	localOnly := r == 1 && contains(pref, c.self) && (!full || len(pref) == 1)
	return readPlan{pref: pref, r: r, full: full, localOnly: localOnly}, nil
}

// GetLive is Get for a caller that wants only the value a single-value read
// answers (version.LiveValue), as Redis GET does. On the local read at R=1
// it picks the value from the stored bytes without decoding the object.
func (c *Coordinator) GetLive(ctx context.Context, key []byte, r int) ([]byte, bool, error) {
	plan, err := c.readPlan(key, r)
	if err != nil {
		return nil, false, err
	}
	if plan.localOnly {
		if value, found, err := c.store.GetLive(key); err == nil {
			return value, found, nil
		}
		plan.localOnly = false // the local read failed: ask the others
	}
	obj, err := c.get(ctx, key, plan)
	if err != nil {
		return nil, false, err
	}
	value, found := version.LiveValue(obj)
	return value, found, nil
}

// readReply is one replica's answer to a read.
type readReply struct {
	node string
	obj  *version.Object
	err  error
}

// Get reads key with read quorum r. It asks R replicas (the local one
// first, then alive ones in preference order; more as any fail), or all N on
// a ReadRepairChance fraction of reads, and returns the merge of the first R
// answers (nil when no replica has the key). Replicas whose answer is older
// than the merge of all answers are repaired in the background.
func (c *Coordinator) Get(ctx context.Context, key []byte, r int) (*version.Object, error) {
	plan, err := c.readPlan(key, r)
	if err != nil {
		return nil, err
	}
	return c.get(ctx, key, plan)
}

func (c *Coordinator) get(ctx context.Context, key []byte, plan readPlan) (*version.Object, error) {
	merged, _, err := c.read(ctx, key, plan)
	return merged, err
}

// read is get, also reporting whether the local replica answered with a
// state that holds everything merged does (so that nothing need be merged
// into it).
func (c *Coordinator) read(ctx context.Context, key []byte, plan readPlan) (merged *version.Object, localCurrent bool, err error) {
	pref, r, full := plan.pref, plan.r, plan.full
	if plan.localOnly {
		obj, err := c.store.Get(key)
		if err == nil {
			if obj != nil && obj.Empty() {
				obj = nil
			}
			return obj, true, nil
		}
	}
	local := contains(pref, c.self)
	// Order: self, then alive replicas, then the rest.
	order := make([]string, 0, len(pref))
	if local {
		order = append(order, c.self)
	}
	for _, alive := range []bool{true, false} {
		for _, node := range pref {
			if node != c.self && c.cluster.Alive(node) == alive {
				order = append(order, node)
			}
		}
	}
	want := r
	if full {
		want = len(order)
	}

	// Remote answers outlive the request (read repair waits for the slow
	// ones), so they run under a deadline of their own.
	replies := make(chan readReply, len(order))
	cancel := context.CancelFunc(func() {})
	var rctx context.Context
	next, outstanding := 0, 0
	var got []readReply
	ask := func() {
		node := order[next]
		next++
		if node == c.self {
			got = append(got, c.readOne(nil, node, key))
			return
		}
		if rctx == nil {
			rctx, cancel = context.WithTimeout(context.Background(), c.o.RepairTimeout)
		}
		outstanding++
		go func() { replies <- c.readOne(rctx, node, key) }()
	}
	for next < want {
		ask()
	}

	ok, failed := 0, 0
	var last error
	tally := func(rep readReply) {
		if rep.err != nil {
			failed++
			last = rep.err
			return
		}
		ok++
		merged = mergeReply(merged, rep.obj)
	}
	for _, rep := range got {
		tally(rep)
	}
	var reqCtx context.Context
	for ok < r {
		// Ask more replicas when those in flight cannot make the quorum.
		for ok+outstanding < r && next < len(order) {
			before := len(got)
			ask()
			if len(got) > before {
				tally(got[len(got)-1])
			}
		}
		if ok >= r || outstanding == 0 {
			break
		}
		if reqCtx == nil {
			var cancelReq context.CancelFunc
			reqCtx, cancelReq = c.withTimeout(ctx)
			defer cancelReq()
		}
		var speculate <-chan time.Time
		if next < len(order) {
			// A replica that died but is not yet marked down would hold
			// the read until its timeout: past a short delay, ask one more.
			speculate = time.After(c.o.SpeculativeDelay)
		}
		select {
		case rep := <-replies:
			outstanding--
			got = append(got, rep)
			tally(rep)
		case <-speculate:
			ask() // always a remote replica: the local one is asked first

		case <-reqCtx.Done():
			last = reqCtx.Err()
			c.finishRead(key, next, got, replies, outstanding, cancel)
			return nil, false, &QuorumError{Op: "read", Needed: r, Answered: ok, Replicas: len(pref), Last: last}
		}
	}
	// The local replica, when asked, was asked first (synchronously).
	localCurrent = local && got[0].err == nil && got[0].obj.Descends(merged)
	c.finishRead(key, next, got, replies, outstanding, cancel)
	if ok < r {
		return nil, false, &QuorumError{Op: "read", Needed: r, Answered: ok, Replicas: len(pref), Last: last}
	}
	if merged != nil && merged.Empty() {
		merged = nil
	}
	return merged, localCurrent, nil
}

// finishRead hands read repair to a background goroutine when answers are
// still outstanding, and otherwise checks inline whether anything needs
// repair (the common case: every replica agreed).
func (c *Coordinator) finishRead(key []byte, asked int, got []readReply, replies <-chan readReply, outstanding int, cancel context.CancelFunc) {
	if outstanding > 0 {
		go c.repair(key, asked, got, replies, cancel)
		return
	}
	cancel()
	c.repairStale(key, got, mergeReplies(got))
}

// repairStale starts read repair when one of the answers in got (all in) is
// older than their merge.
func (c *Coordinator) repairStale(key []byte, got []readReply, merged *version.Object) {
	if merged == nil || merged.Empty() {
		return
	}
	for _, rep := range got {
		if rep.err == nil && (rep.obj == nil || !rep.obj.Descends(merged)) {
			go c.repair(key, len(got), got, nil, func() {})
			return
		}
	}
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

func (c *Coordinator) readOne(ctx context.Context, node string, key []byte) readReply {
	if node == c.self {
		obj, err := c.store.Get(key)
		return readReply{node: node, obj: obj, err: err}
	}
	reply, err := c.call(ctx, node, kindRead, key)
	if err != nil {
		return readReply{node: node, err: err}
	}
	if len(reply) == 0 {
		return readReply{node: node}
	}
	obj, err := version.DecodeObject(reply)
	return readReply{node: node, obj: obj, err: err}
}

// repair waits (bounded) for the answers not yet in, merges everything, and
// sends the merge to each replica that answered with an older state.
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
		if rep.err != nil || (rep.obj != nil && rep.obj.Descends(merged)) {
			continue
		}
		var err error
		if rep.node == c.self {
			_, _, err = c.store.Apply(key, merged)
		} else {
			err = c.send(ctx, rep.node, kindReplicate, payload)
		}
		if err != nil {
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

// replicate sends a freshly stamped version to the key's other replicas,
// each answer going to results, and returns how many it sent to.
// Replication outlives the request when W is reached early, so it runs
// under its own deadline, not the client's.
func (c *Coordinator) replicate(key []byte, obj *version.Object, pref []string, results chan<- error) int {
	payload := encodeReplicate(key, obj)
	var hkey [][]byte
	if c.o.Hints != nil {
		// The caller's key buffer may be reused once the write answers,
		// which can be before a replica's failure is known.
		hkey = [][]byte{bytes.Clone(key)}
	}
	sent := 0
	for _, node := range pref {
		if node == c.self {
			continue
		}
		sent++
		go func(node string) {
			sctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
			defer cancel()
			err := c.send(sctx, node, kindReplicate, payload)
			results <- err
			if missed(err) {
				// Not acknowledged in time: keep it for node (after the
				// answer is counted, so the client does not wait for it).
				c.hint(node, hkey, []*version.Object{obj})
			}
		}(node)
	}
	return sent
}
