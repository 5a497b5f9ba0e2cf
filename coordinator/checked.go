package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/batchkeys"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// Checked blind writes.
//
// A blind write (Redis SET: no client context) must supersede every write
// acknowledged before it began, so it is stamped with the merged state of
// min(W, R) replicas (writeContext), which costs a read round trip before
// the write's own. When that read would ask exactly one other replica
// (min(W, R) = 2 with W = 2: N = 3 at QUORUM), a checked write asks the
// question inside the write instead:
//
//  1. This replica stamps the write on its own state and keeps the key
//     locked, storing nothing (replica.Store.Prepare): no other write of the
//     key can mint a dot here meanwhile.
//  2. Each other target (all primaries) gets the new version in a
//     kindReplicateCovering message and stores it only if it descends what
//     that replica holds (replica.Store.ApplyCovering), answering whether it
//     did. A replica that stored it held nothing the write does not
//     supersede: the write's context covers the merge of this replica's
//     state and that one's, which is exactly what the read would have
//     given it.
//  3. Once one target stored it, this replica stores it too (the write has
//     W = 2), and the targets that answered "not stored" get it as an
//     ordinary replication message (they merge it; what they held beyond it
//     stays as siblings, as it would after a read-first write), those that
//     did not answer as hints.
//  4. When every target answered "not stored" (this replica was behind:
//     nothing is stored anywhere, so nothing was visible), the write is
//     dropped and done the old way: read first, then write under a new dot.
//     When none stored it but one did not answer (it may have), this
//     replica stores it anyway, so that the dot it minted is never minted
//     again for another value, and the write fails with its outcome unknown.
//
// Nothing is visible before it is known to supersede a quorum's state, so
// no write is applied twice and no context is ever extended after the
// fact (the two ways an earlier attempt lost writes).
//
// The writes of a pipelined batch are checked together (checkedBatch), and
// concurrent single writes from different clients are combined into one
// call (combine.go): one kindReplicateCovering message per target for all
// of them, each write with its own outcome.

// checkable reports whether a blind write of a value at quorum q on route rt
// may be checked: W = 2 and min(W, default R) = 2, no datacenter level, and
// every target a primary of the key not known to refuse
// kindReplicateCovering (fallbacks and joining owners take the read-first
// path).
func (c *Coordinator) checkable(q quorum, rt route) bool {
	if c.o.ReadBeforeBlindWrite || q.w != 2 || q.pw > q.w || len(q.dcs) > 0 || len(rt.pending) > 0 || len(rt.targets) < 2 {
		return false
	}
	if r, _ := resolve("read", Default, c.o.R, rt.n, rt.n); r < 2 {
		return false
	}
	self := false
	for _, tg := range rt.targets {
		if tg.For != "" {
			return false
		}
		if tg.Node == c.self {
			self = true
		} else if c.refusesCovering(tg.Node) {
			return false
		}
	}
	return self
}

// noCoveringFor is how long a peer that refused kindReplicateCovering as an
// unknown kind (an older node) is not sent it again: after an upgrade it
// gets checked writes again.
const noCoveringFor = time.Minute

// refusesCovering reports whether node refused kindReplicateCovering less
// than noCoveringFor ago.
func (c *Coordinator) refusesCovering(node string) bool {
	v, ok := c.noCovering.Load(node)
	if !ok {
		return false
	}
	if time.Since(v.(time.Time)) < noCoveringFor {
		return true
	}
	c.noCovering.CompareAndDelete(node, v) // not one stored meanwhile
	return false
}

// coverVerdict is a target's answer for one entry of a checked write.
type coverVerdict uint8

const (
	coverStored  coverVerdict = iota + 1 // stored: it covered the target's state
	coverRefused                         // not stored (did not cover, or the message never arrived)
	coverUnknown                         // no usable answer: it may have been stored
)

// coveringAnswer is one target's answer to one kindReplicateCovering
// message: a verdict per entry (entries idx of the checked batch), and for
// an entry refused, what the target holds for its key when it said (held,
// nil if it said for none).
type coveringAnswer struct {
	node     string
	idx      []int
	verdicts []coverVerdict
	held     []*version.Object
	err      error
}

// checkedWrites runs blind writes of values (writes[j] at quorum
// quorums[j] on route routes[j], each checkable, no key twice) as checked
// writes. For each it returns the stored object (nil if none) and error,
// or again[j] set: every target answered "not stored", nothing was stored,
// and the caller does the write the read-first way. For such a write,
// ctxs[j], when not nil, is the context the read would have given (this
// replica's state merged with what the targets said they hold, which is
// already merged into this replica): the caller writes with it instead of
// reading.
func (c *Coordinator) checkedWrites(ctx context.Context, writes []replica.Write, quorums []quorum, routes []route) (objs []*version.Object, errs []error, again []bool, ctxs []version.Clock) {
	errs = make([]error, len(writes))
	again = make([]bool, len(writes))
	ctxs = make([]version.Clock, len(writes))
	p, err := c.store.Prepare(writes, c.o.Now().UnixNano())
	if err != nil {
		for j := range errs {
			errs[j] = err
		}
		return nil, errs, again, ctxs
	}
	defer p.Drop() // a no-op once committed
	objs = p.Objects()
	encoded := p.Encoded()
	for j, err := range p.Errors() {
		errs[j] = err // refused before anything was sent: the client's error
	}

	// Keys outlive this call in the follow-ups and hints.
	keys := make([][]byte, len(writes))
	type share struct {
		idx       []int
		keys, enc [][]byte
	}
	shares := map[string]*share{}
	asked := make([]int, len(writes))
	pending := 0 // writes stamped, not yet decided
	for j := range writes {
		if objs[j] == nil {
			continue
		}
		keys[j] = bytes.Clone(writes[j].Key)
		pending++
		for _, tg := range routes[j].targets {
			if tg.Node == c.self {
				continue
			}
			sh := shares[tg.Node]
			if sh == nil {
				sh = &share{}
				shares[tg.Node] = sh
			}
			sh.idx, sh.keys, sh.enc = append(sh.idx, j), append(sh.keys, keys[j]), append(sh.enc, encoded[j])
			asked[j]++
		}
	}
	if pending == 0 {
		return objs, errs, again, ctxs
	}

	type message struct {
		node string
		m    replicateMessage
		idx  []int
	}
	var msgs []message
	for node, sh := range shares {
		for _, m := range splitEncoded(sh.keys, sh.enc) {
			msgs = append(msgs, message{node: node, m: m, idx: sh.idx[m.from:m.to]})
		}
	}
	// The messages may outlive the wait (a slow target's answer still
	// decides its follow-up), bounded by Timeout.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.Timeout)
	answers := make(chan coveringAnswer, len(msgs))
	for _, msg := range msgs {
		go func() {
			reply, err := c.call(sctx, msg.node, kindReplicateCovering, encodeReplicateBatch(msg.m.keys, msg.m.encoded))
			var stored []bool
			var held []*version.Object
			if err == nil {
				stored, held, err = decodeCoveringReply(reply, len(msg.idx))
			}
			if unknownKind(err) {
				c.noCovering.Store(msg.node, time.Now()) // an older node: read first for a while
			}
			a := coveringAnswer{node: msg.node, idx: msg.idx, verdicts: make([]coverVerdict, len(msg.idx)), held: held, err: err}
			for n := range msg.idx {
				switch {
				case err == nil && stored[n]:
					a.verdicts[n] = coverStored
				case err == nil, unknownKind(err), errors.Is(err, transport.ErrNotSent):
					a.verdicts[n] = coverRefused
				default:
					a.verdicts[n] = coverUnknown
				}
			}
			answers <- a
		}()
	}

	stored := make([]int, len(writes))
	answered := make([]int, len(writes))
	refused := make([]int, len(writes))
	learned := make([]*version.Object, len(writes)) // what refusing targets hold
	lastErr := make([]error, len(writes))
	decided := func(j int) bool { return stored[j] > 0 || answered[j] == asked[j] }
	var got []coveringAnswer
	count := func(a coveringAnswer) {
		got = append(got, a)
		for n, j := range a.idx {
			was := decided(j)
			answered[j]++
			switch a.verdicts[n] {
			case coverStored:
				stored[j]++
				c.countAck(nil)
			case coverRefused:
				refused[j]++
				if a.held != nil && a.held[n] != nil {
					learned[j] = version.Merge(learned[j], a.held[n])
				}
			default:
				c.countAck(a.err)
			}
			if a.err != nil {
				lastErr[j] = fmt.Errorf("%s: %w", a.node, a.err)
			}
			if !was && decided(j) {
				pending--
			}
		}
	}
	var bound waitBound
	bound.start(ctx, c.o.Timeout)
	defer bound.stop()
wait:
	for pending > 0 && len(got) < len(msgs) {
		select {
		case a := <-answers:
			count(a)
		case <-ctx.Done():
			break wait
		case <-bound.timeout:
			break wait
		}
	}

	keep := make([]bool, len(writes))
	for j := range writes {
		if objs[j] == nil {
			continue
		}
		if stored[j] == 0 && refused[j] == asked[j] {
			again[j] = true // nothing stored anywhere: read first, new dot
			continue
		}
		// Stored by a target, or perhaps (no answer from one): stored here
		// too, so that its dot is never minted again for another value.
		keep[j] = true
	}
	commitErr := p.Commit(keep)

	// What refusing targets hold goes into this replica. For a write given
	// back, that is the read it would have made; for one of unknown
	// outcome, it is what lets the client's retry succeed: both are
	// learned here. For one confirmed, the follow-up learns it in the
	// background (this replica then holds what those targets will once
	// the follow-up reaches them, and its next write covers it).
	inline := make([]bool, len(writes))
	var lkeys [][]byte
	var lobjs []*version.Object
	var lidx []int
	for j := range writes {
		if inline[j] = again[j] || keep[j] && stored[j] == 0 && commitErr == nil; inline[j] && learned[j] != nil {
			lkeys, lobjs, lidx = append(lkeys, keys[j]), append(lobjs, learned[j]), append(lidx, j)
		}
	}
	if len(lkeys) > 0 {
		merged, err := c.store.ApplyBatchMerged(lkeys, lobjs)
		if err != nil {
			c.o.Logf("checked write: learn what the replicas hold: %v", err)
		}
		for k, j := range lidx {
			if err == nil && again[j] && merged[k] != nil {
				// The read's context: this replica's state merged with
				// what the targets hold (as writeContexts takes it).
				ctxs[j] = merged[k].Context.Clone()
			}
		}
	}

	for j := range writes {
		q, replicas := quorums[j], len(routes[j].pref)
		switch {
		case again[j]:
			c.m.checkedReadFirst.Add(1)
		case !keep[j]:
		case stored[j] > 0 && commitErr == nil:
			c.m.checkedStored.Add(1)
		case stored[j] > 0:
			errs[j] = &QuorumError{Op: "write", Needed: q.w, Answered: stored[j], Replicas: replicas, Last: commitErr}
		default:
			c.m.checkedUnknown.Add(1)
			last := lastErr[j]
			if last == nil {
				last = bound.err(ctx)
			}
			acks := 1
			if commitErr != nil {
				acks, last = 0, commitErr
			}
			errs[j] = &QuorumError{Op: "write", Needed: q.w, Answered: acks, Replicas: replicas,
				Last: fmt.Errorf("%w: no other replica confirmed the write: %w", ErrUnknownOutcome, last)}
		}
		if !keep[j] {
			objs[j] = nil
		}
	}
	if commitErr != nil {
		// Not stored here: the targets that stored it keep it; the others
		// get nothing more from this write.
		go func() {
			defer cancel()
			for range len(msgs) - len(got) {
				<-answers
			}
		}()
		return objs, errs, again, ctxs
	}
	// The follow-ups, in the background: the version to each target that
	// did not store it, as an ordinary replication (refused) or a hint (no
	// answer); and what a refusing target holds, where it was not learned
	// above (a confirmed write, or an answer that came late).
	kept := objs
	follow := func(a coveringAnswer, late bool) {
		var sendKeys, sendEnc, hintKeys, heldKeys [][]byte
		var sendObjs, hintObjs, heldObjs []*version.Object
		for n, j := range a.idx {
			if !keep[j] {
				continue
			}
			switch a.verdicts[n] {
			case coverRefused:
				sendKeys, sendEnc, sendObjs = append(sendKeys, keys[j]), append(sendEnc, encoded[j]), append(sendObjs, kept[j])
				if a.held != nil && a.held[n] != nil && (late || !inline[j]) {
					heldKeys, heldObjs = append(heldKeys, keys[j]), append(heldObjs, a.held[n])
				}
			case coverUnknown:
				hintKeys, hintObjs = append(hintKeys, keys[j]), append(hintObjs, kept[j])
			}
		}
		if len(heldKeys) > 0 {
			if err := c.store.ApplyBatch(heldKeys, heldObjs); err != nil {
				c.o.Logf("checked write: learn what %s holds: %v", a.node, err)
			}
		}
		c.hint(a.node, hintKeys, hintObjs)
		for _, m := range splitEncoded(sendKeys, sendEnc) {
			c.sendPending(a.node, m, sendObjs[m.from:m.to])
		}
	}
	done := got
	go func() {
		defer cancel()
		for _, a := range done {
			follow(a, false)
		}
		for range len(msgs) - len(done) {
			follow(<-answers, true)
		}
	}()
	return objs, errs, again, ctxs
}

// checkedBatch runs the checkable writes of a coordinated batch (writes[j]
// at batch index pos[j], none with a context; a key written twice in the
// batch is never checked) with checkedWrites, combined with the concurrent
// checked writes of other clients (checkedWritesCombined), setting their
// errors in errs,
// and returns the writes left for the read-first path, in batch order:
// those not checkable and those checkedWrites gave back.
func (c *Coordinator) checkedBatch(ctx context.Context, writes []replica.Write, quorums []quorum, routes []route, pos []int, errs []error) ([]replica.Write, []quorum, []int) {
	repeated := make([]bool, len(writes))
	for j, p := range batchkeys.Previous(len(writes), func(j int) []byte { return writes[j].Key }, nil) {
		if p >= 0 {
			repeated[j], repeated[p] = true, true
		}
	}
	var chk []int // indices into writes
	for j, w := range writes {
		if w.Ctx == nil && !w.Deleted && !repeated[j] && c.checkable(quorums[j], routes[pos[j]]) {
			chk = append(chk, j)
		}
	}
	if len(chk) == 0 {
		return writes, quorums, pos
	}
	cw := make([]replica.Write, len(chk))
	cq := make([]quorum, len(chk))
	cr := make([]route, len(chk))
	for k, j := range chk {
		cw[k], cq[k], cr[k] = writes[j], quorums[j], routes[pos[j]]
	}
	_, cerrs, again, ctxs := c.checkedWritesCombined(ctx, cw, cq, cr)
	done := make([]bool, len(writes))
	for k, j := range chk {
		if !again[k] {
			done[j] = true
			errs[pos[j]] = cerrs[k]
		} else if ctxs[k] != nil {
			writes[j].Ctx = ctxs[k] // learned: writeContexts skips it
		}
	}
	kept := 0
	for j := range writes {
		if !done[j] {
			writes[kept], quorums[kept], pos[kept] = writes[j], quorums[j], pos[j]
			kept++
		}
	}
	return writes[:kept], quorums[:kept], pos[:kept]
}
