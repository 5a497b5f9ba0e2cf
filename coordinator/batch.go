package coordinator

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ringkv/ringkv/batchkeys"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/version"
)

// PutBatch writes several blind values (no causal context, as Put with a
// nil context) with write quorum w, as if Put were called for each in
// order, and returns one error per key (nil for a write that reached its
// quorum). A later write to a key that also appears earlier in the batch
// supersedes it.
//
// It exists for pipelined clients: the keys this node is a replica of are
// stamped and stored with one engine batch (one commit-log write and at
// most one fsync for all of them), and their replication to the other
// replicas starts as each is stamped; the others are forwarded as Put
// would forward them, concurrently across keys and in order within a key.
func (c *Coordinator) PutBatch(ctx context.Context, keys, values [][]byte, w int) []error {
	return c.PutBatchAt(ctx, keys, values, Levels{W: w})
}

// PutBatchAt is PutBatch at the write levels of lv (W and PW), each key's
// write with the rules of PutAt.
func (c *Coordinator) PutBatchAt(ctx context.Context, keys, values [][]byte, lv Levels) []error {
	start := time.Now()
	errs := c.putBatchAt(ctx, keys, values, lv)
	c.observeBatch(ctx, OpPut, lv.W, time.Since(start), errs)
	return errs
}

func (c *Coordinator) putBatchAt(ctx context.Context, keys, values [][]byte, lv Levels) []error {
	errs := make([]error, len(keys))
	var local []int
	var remote map[string][]int // key -> indices, in batch order
	routes := make([]route, len(keys))
	// One ring for the whole batch, so that a ring change while the batch
	// is being split cannot send a repeated key both ways.
	rg := c.cluster.Ring()
	for i, key := range keys {
		rt, err := c.routeIn(rg, key)
		if err != nil {
			errs[i] = err
			continue
		}
		routes[i] = rt
		if contains(rt.pref, c.self) {
			local = append(local, i)
			continue
		}
		if remote == nil {
			remote = make(map[string][]int)
		}
		remote[string(key)] = append(remote[string(key)], i)
	}

	var wg sync.WaitGroup
	for _, idx := range remote {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range idx {
				_, errs[i] = c.write(ctx, writeRequest{key: keys[i], value: values[i], w: lv.W, pw: lv.PW})
			}
		}()
	}
	switch len(local) {
	case 0:
	case 1:
		i := local[0]
		_, errs[i] = c.coordinateWrite(ctx, writeRequest{key: keys[i], value: values[i], w: lv.W, pw: lv.PW}, routes[i])
	default:
		c.coordinateWriteBatch(ctx, keys, values, lv, local, routes, errs)
	}
	wg.Wait()
	return errs
}

// coordinateWriteBatch is coordinateWrite for the writes at indices idx,
// whose keys all have this node as a primary: the targets' contexts read
// with one message per node (writeContexts), one engine batch for the
// local writes, then the acknowledgements of each key's other targets.
func (c *Coordinator) coordinateWriteBatch(ctx context.Context, keys, values [][]byte, lv Levels, idx []int, routes []route, errs []error) {
	quorums := make([]quorum, len(idx))
	writes := make([]replica.Write, 0, len(idx))
	pos := make([]int, 0, len(idx)) // writes[j] is the write at index pos[j]
	for _, i := range idx {
		q, err := c.writeQuorum(lv.W, lv.PW, routes[i], c.localDC(routes[i]))
		if err != nil {
			errs[i] = err
			continue
		}
		quorums[len(writes)] = q
		writes = append(writes, replica.Write{Key: keys[i], Value: values[i]})
		pos = append(pos, i)
	}
	if len(writes) == 0 {
		return
	}
	if writes, quorums, pos = c.checkedBatch(ctx, writes, quorums, routes, pos, errs); len(writes) == 0 {
		return
	}
	if skip := c.writeContexts(ctx, writes, quorums, routes[pos[0]].n, pos, errs); skip != nil {
		kept := 0
		for j := range writes {
			if !skip[j] {
				writes[kept], quorums[kept], pos[kept] = writes[j], quorums[j], pos[j]
				kept++
			}
		}
		if writes, quorums, pos = writes[:kept], quorums[:kept], pos[:kept]; kept == 0 {
			return
		}
	}
	results := make([]chan ack, len(writes))
	sent := make([]fanout, len(writes))
	anySent := false
	// The other targets get the new versions as soon as they are stamped,
	// in parallel with the local write: one message per target (per
	// primary stood in for, for a fallback) for all the batch's keys it
	// serves.
	stamped := func(objs []*version.Object) {
		peers := map[ring.Target]*peerBatch{}
		pending := map[string]*peerBatch{}
		for j, obj := range objs {
			rt := routes[pos[j]]
			if obj == nil {
				continue
			}
			for _, node := range c.pendingTargets(rt) {
				pb := pending[node]
				if pb == nil {
					pb = &peerBatch{}
					pending[node] = pb
				}
				key := writes[j].Key
				if c.o.Hints != nil {
					key = bytes.Clone(key)
				}
				pb.keys = append(pb.keys, key)
				pb.objs = append(pb.objs, obj)
			}
			if len(rt.targets) < 2 {
				continue
			}
			results[j] = make(chan ack, len(rt.targets))
			for _, tg := range rt.targets {
				if tg.Node == c.self {
					continue
				}
				pb := peers[tg]
				if pb == nil {
					pb = &peerBatch{dc: rt.rg.DC(tg.Node)}
					peers[tg] = pb
				}
				key := writes[j].Key
				if c.o.Hints != nil {
					// A hint may outlive the caller's key buffer.
					key = bytes.Clone(key)
				}
				pb.idx = append(pb.idx, j)
				pb.keys = append(pb.keys, key)
				pb.objs = append(pb.objs, obj)
				sent[j].add(quorums[j], tg.For == "", pb.dc)
			}
		}
		for tg, pb := range peers {
			anySent = true
			for _, m := range splitReplicateBatch(pb.keys, pb.objs) {
				go c.sendBatch(tg, pb.dc, m, pb.idx[m.from:m.to], pb.objs[m.from:m.to], results)
			}
		}
		for node, pb := range pending {
			for _, m := range splitReplicateBatch(pb.keys, pb.objs) {
				go c.sendPending(node, m, pb.objs[m.from:m.to])
			}
		}
	}
	_, writeErrs, batchErr := c.store.CoordinateBatch(writes, c.o.Now().UnixNano(), stamped)

	if anySent {
		var cancel context.CancelFunc
		ctx, cancel = c.withTimeout(ctx)
		defer cancel()
	}
	for j, i := range pos {
		localErr := batchErr
		if writeErrs != nil && writeErrs[j] != nil {
			localErr = writeErrs[j]
		}
		if localErr == nil && quorums[j].metLocally() {
			continue
		}
		replicas := len(routes[i].pref)
		acks, qerr := c.awaitAcks(ctx, &waitBound{}, quorums[j], localErr, sent[j], results[j], replicas)
		switch {
		case qerr != nil:
			errs[i] = qerr
		case localErr != nil:
			errs[i] = &QuorumError{Op: "write", Needed: quorums[j].w, Answered: acks, Replicas: replicas, Last: localErr}
		}
	}
}

// peerBatch is one target's share of a batch of writes: the writes' indices
// in the batch, their keys and stamped objects, and the target's
// datacenter.
type peerBatch struct {
	idx  []int
	keys [][]byte
	objs []*version.Object
	dc   string
}

// sendBatch sends one message of a batch's versions to tg (a primary:
// kindReplicateBatch; a fallback: kindHandoff) and reports each entry's
// answer on results[idx[n]]. Entries not acknowledged are kept as hints for
// the primary tg serves.
// dc is tg's datacenter.
func (c *Coordinator) sendBatch(tg ring.Target, dc string, m replicateMessage, idx []int, objs []*version.Object, results []chan ack) {
	sctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	primary := tg.For == ""
	kind, payload := kindReplicateBatch, encodeReplicateBatch(m.keys, m.encoded)
	if !primary {
		kind, payload = kindHandoff, encodeHandoff(tg.For, payload)
	}
	err := c.send(sctx, tg.Node, kind, payload)
	if err != nil && isRemote(err) && primary {
		// The replica answered but refused the batch: a node of an older
		// version that does not know the message, or one entry it could
		// not store. Send the entries one by one, each with its own answer.
		var hkeys [][]byte
		var hobjs []*version.Object
		for n, j := range idx {
			err := c.send(sctx, tg.Node, kindReplicate, appendReplicate(nil, m.keys[n], m.encoded[n]))
			c.countAck(err)
			results[j] <- ack{err: err, primary: true, dc: dc}
			if missed(err) {
				hkeys, hobjs = append(hkeys, m.keys[n]), append(hobjs, objs[n])
			}
		}
		c.hint(tg.Node, hkeys, hobjs)
		return
	}
	for _, j := range idx {
		c.countAck(err)
		results[j] <- ack{err: err, primary: primary, dc: dc}
	}
	if missed(err) {
		// Not acknowledged in time: keep them for the primary.
		c.hint(primaryOf(tg), m.keys, objs)
	}
}

// sendPending sends one message of a batch's versions to a pending owner
// of their keys (see pendingTargets): no answer is counted; what it does not
// acknowledge is kept as hints for it.
func (c *Coordinator) sendPending(node string, m replicateMessage, objs []*version.Object) {
	sctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	err := c.send(sctx, node, kindReplicateBatch, encodeReplicateBatch(m.keys, m.encoded))
	if err != nil && isRemote(err) {
		// Refused as a batch (an older node, or one entry it could not
		// store): one by one, as sendBatch does.
		var hkeys [][]byte
		var hobjs []*version.Object
		for n := range m.keys {
			if missed(c.send(sctx, node, kindReplicate, appendReplicate(nil, m.keys[n], m.encoded[n]))) {
				hkeys, hobjs = append(hkeys, m.keys[n]), append(hobjs, objs[n])
			}
		}
		c.hint(node, hkeys, hobjs)
		return
	}
	if missed(err) {
		c.hint(node, m.keys, objs)
	}
}

// writeContexts is writeContext for a batch of blind writes: it reads the
// keys at min(W, default R) with GetBatch (one message per replica), applies
// each merged state to the local replica, and sets each write's context to
// it. Only the first write to a key in the batch gets the context: a later
// one stays blind, so that it supersedes the earlier one too (CoordinateBatch
// builds it on the earlier write's object). A write whose read (or local
// apply) fails gets its error in errs, at its batch index pos[j], and is
// marked in skip (nil when none is), as is every later write to its key, so
// that none is stamped or sent.
func (c *Coordinator) writeContexts(ctx context.Context, writes []replica.Write, quorums []quorum, n int, pos []int, errs []error) (skip []bool) {
	r, _ := resolve("read", Default, c.o.R, n, n)
	// blindFirst[j] is the first write to writes[j].Key without a
	// context, -1 when none is.
	blindFirst := blindFirstWrites(writes)
	// read level (and whether its answers must come from primaries) ->
	// first writes to read for
	type readLevel struct {
		r         int
		primaries bool
	}
	byLevel := map[readLevel][]int{}
	fail := func(j int, err error) {
		skip = markSkip(skip, len(writes), j)
		errs[pos[j]] = fmt.Errorf("blind write of %q: %w", writes[j].Key, err)
	}
	for j := range writes {
		if writes[j].Ctx != nil {
			continue // its context is known already (see checkedBatch)
		}
		if blindFirst[j] != j {
			continue
		}
		q := quorums[j]
		// Under strict quorum the answers come from primaries (see
		// fromPrimaries).
		strict := q.pw > 0
		switch rq := min(r, q.w); {
		case len(q.dcs) > 0 && r > 1 && q.w > 1 && strict:
			// Primaries per datacenter: GetBatchAt has no such level, so
			// this key reads on its own, as a single write would.
			rt, err := c.route(writes[j].Key)
			if err == nil {
				writes[j].Ctx, err = c.writeContext(ctx, writes[j].Key, rt, q)
			}
			if err != nil {
				skip = markSkip(skip, len(writes), j)
				errs[pos[j]] = err
			}
		case len(q.dcs) > 0 && r > 1 && q.w > 1:
			// A datacenter level reads at the same level (see
			// writeContext).
			byLevel[readLevel{r: q.level}] = append(byLevel[readLevel{r: q.level}], j)
		case len(q.dcs) == 0 && rq > 1:
			byLevel[readLevel{rq, strict}] = append(byLevel[readLevel{rq, strict}], j)
		}
	}
	for rl, js := range byLevel {
		keys := make([][]byte, len(js))
		for k, j := range js {
			keys[k] = writes[j].Key
		}
		lv := Levels{R: rl.r}
		if rl.primaries {
			lv.PR = rl.r
		}
		objs, rerrs := c.getBatchAt(ctx, keys, lv, false)
		var apply [][]byte
		var merged []*version.Object
		var applied []int
		for k, j := range js {
			switch {
			case rerrs[k] != nil:
				fail(j, fmt.Errorf("read the replicas' versions first: %w", rerrs[k]))
			case objs[k] != nil:
				apply, merged, applied = append(apply, keys[k]), append(merged, objs[k]), append(applied, j)
				writes[j].Ctx = objs[k].Context.Clone()
			}
		}
		if len(apply) == 0 {
			continue
		}
		if err := c.store.ApplyBatch(apply, merged); err != nil {
			for _, j := range applied {
				fail(j, fmt.Errorf("store the replicas' versions: %w", err))
			}
		}
	}
	if skip != nil {
		for j := range writes {
			if f := blindFirst[j]; f >= 0 && f != j && skip[f] {
				fail(j, errors.Unwrap(errs[pos[f]]))
			}
		}
	}
	return skip
}

// blindFirstWrites returns, for each of writes, the index of the first
// write in the batch to its key that has no context (-1 when none has).
func blindFirstWrites(writes []replica.Write) []int {
	first := batchkeys.Previous(len(writes), func(j int) []byte { return writes[j].Key }, nil)
	first = batchkeys.First(first, first) // first[j]: the key's first write
	blind := make([]int, len(writes))     // by a key's first write
	for j := range blind {
		blind[j] = -1
	}
	for j, w := range writes {
		if w.Ctx == nil && blind[first[j]] < 0 {
			blind[first[j]] = j
		}
	}
	for j, f := range first {
		first[j] = blind[f]
	}
	return first
}

// markSkip marks write j of n in skip, making skip when it is nil.
func markSkip(skip []bool, n, j int) []bool {
	if skip == nil {
		skip = make([]bool, n)
	}
	skip[j] = true
	return skip
}

// Bounds of one kindReplicateBatch message: well under the transport's
// frame limit and the receiver's entry limit, whatever the batch.
const (
	replicateBatchMaxEntries = 1024
	replicateBatchMaxBytes   = 4 << 20
)

// replicateMessage is entries [from, to) of a peer's share of a batch,
// with their objects encoded.
type replicateMessage struct {
	from, to int
	keys     [][]byte
	encoded  [][]byte
}

// splitReplicateBatch encodes objs and cuts keys into messages of at most
// replicateBatchMaxEntries entries and, unless a single entry is larger,
// replicateBatchMaxBytes bytes.
func splitReplicateBatch(keys [][]byte, objs []*version.Object) []replicateMessage {
	encoded := make([][]byte, len(objs))
	for i, obj := range objs {
		encoded[i] = obj.Encode(nil)
	}
	return splitEncoded(keys, encoded)
}

// splitEncoded is splitReplicateBatch for objects already encoded.
func splitEncoded(keys, encoded [][]byte) []replicateMessage {
	var out []replicateMessage
	cur := replicateMessage{}
	size := 0
	for i := range keys {
		enc := encoded[i]
		n := len(keys[i]) + len(enc) + 2*binary.MaxVarintLen64
		if cur.to > cur.from && (cur.to-cur.from >= replicateBatchMaxEntries || size+n > replicateBatchMaxBytes) {
			out = append(out, cur)
			cur, size = replicateMessage{from: i, to: i}, 0
		}
		cur.keys = append(cur.keys, keys[i])
		cur.encoded = append(cur.encoded, enc)
		cur.to = i + 1
		size += n
	}
	if cur.to > cur.from {
		out = append(out, cur)
	}
	return out
}

// GetBatch reads several keys with read quorum r, as Get would read each,
// and returns one object (nil when absent) or error per key. Where this
// node is a replica and R > 1, it reads locally and asks each other replica
// it needs once for all the batch's keys it holds (kindReadBatch), then
// merges and read-repairs per key; a key picked for a full read-repair read
// asks every live primary in those same messages. Keys this node does not
// replicate and keys whose batched answers did not come (a failed or slow
// replica) take Get's own path, concurrently.
func (c *Coordinator) GetBatch(ctx context.Context, keys [][]byte, r int) ([]*version.Object, []error) {
	return c.GetBatchAt(ctx, keys, Levels{R: r})
}

// GetBatchAt is GetBatch at the read levels of lv (R and PR), each key with
// the rules of GetAt. The batched path asks primaries only; keys whose
// levels it cannot meet that way take GetAt's path.
func (c *Coordinator) GetBatchAt(ctx context.Context, keys [][]byte, lv Levels) ([]*version.Object, []error) {
	start := time.Now()
	objs, errs := c.getBatchAt(ctx, keys, lv, true)
	for i, err := range errs {
		if err == nil {
			c.countSiblings(objs[i])
		}
	}
	c.observeBatch(ctx, OpGet, lv.R, time.Since(start), errs)
	return objs, errs
}

// GetLiveBatchAt is GetBatchAt for a caller that wants each key's live
// value, the one GetLiveAt answers with (found false when the key is
// absent or deleted). A key whose read is this replica's alone (R=1 on a
// primary, no full read-repair read drawn) is answered from its stored
// bytes without building its object, as GetLiveAt does; the others take
// GetBatchAt's path with the plans drawn here.
func (c *Coordinator) GetLiveBatchAt(ctx context.Context, keys [][]byte, lv Levels) (values [][]byte, found []bool, errs []error) {
	start := time.Now()
	errs = make([]error, len(keys))
	plans := make([]readPlan, len(keys))
	rest := make([]int, 0, len(keys))
	for i, key := range keys {
		plan, err := c.readPlan(key, lv)
		if err != nil {
			errs[i] = err
			continue
		}
		if plan.localOnly {
			if v, ok, err := c.store.GetLive(key); err == nil {
				if values == nil {
					values, found = make([][]byte, len(keys)), make([]bool, len(keys))
				}
				values[i], found[i] = v, ok
				continue
			}
			plan.localOnly = false // the local read failed: ask the others
		}
		plans[i] = plan
		rest = append(rest, i)
	}
	if values == nil && len(rest) < len(keys) {
		values, found = make([][]byte, len(keys)), make([]bool, len(keys))
	}
	switch {
	case len(rest) == len(keys):
		// Every key takes the batched path (the common case): no copies.
		values, found, errs = c.getLivePlanned(ctx, keys, plans)
	case len(rest) > 0:
		restKeys, restPlans := make([][]byte, len(rest)), make([]readPlan, len(rest))
		for j, i := range rest {
			restKeys[j], restPlans[j] = keys[i], plans[i]
		}
		v, f, e := c.getLivePlanned(ctx, restKeys, restPlans)
		for j, i := range rest {
			values[i], found[i], errs[i] = v[j], f[j], e[j]
		}
	}
	// Every key of the batch took the batch's time (as in GetBatchAt).
	c.observeBatch(ctx, OpGet, lv.R, time.Since(start), errs)
	return values, found, errs
}

// getLivePlanned reads the live value of each of keys with the read plan
// drawn for it (plans[i], none of them local only), through
// getBatchPlanned. A key whose replicas all agree with this one's stored
// bytes is answered from them without building its object.
func (c *Coordinator) getLivePlanned(ctx context.Context, keys [][]byte, plans []readPlan) (values [][]byte, found []bool, errs []error) {
	values, found = make([][]byte, len(keys)), make([]bool, len(keys))
	raws := make([][]byte, len(keys))
	objs, errs := c.getBatchPlanned(ctx, keys, plans, Levels{}, batchOpts{fullReads: true, raws: raws})
	for i := range keys {
		if errs[i] != nil {
			continue
		}
		var again bool
		values[i], found[i], again = c.liveValue(raws[i], objs[i])
		if again {
			// Unreadable here, yet the others agreed with its hash:
			// read it again the long way (which asks them for theirs).
			var obj *version.Object
			if obj, errs[i] = c.get(ctx, keys[i], plans[i]); errs[i] == nil {
				c.countSiblings(obj)
				values[i], found[i] = version.LiveValue(obj)
			}
		}
	}
	return values, found, errs
}

// liveValue is the live value of a key getBatchPlanned answered with its
// stored bytes raw (when not nil) or its object obj, counting its
// siblings; again when raw does not decode.
func (c *Coordinator) liveValue(raw []byte, obj *version.Object) (value []byte, found, again bool) {
	if raw != nil {
		v, deleted, ok, live, err := version.DecodeWinnerLive(raw)
		if err != nil {
			return nil, false, true
		}
		c.countLive(live)
		return v, ok && !deleted, false
	}
	c.countSiblings(obj)
	value, found = version.LiveValue(obj)
	return value, found, false
}

// getBatchAt is GetBatchAt; with fullReads false no key is drawn for a full
// read-repair read. The context reads of pipelined blind writes pass false,
// as writeContext's single read does: the write that follows sends its
// version to every replica anyway, so asking them all first is wasted.
func (c *Coordinator) getBatchAt(ctx context.Context, keys [][]byte, lv Levels, fullReads bool) ([]*version.Object, []error) {
	return c.getBatchPlanned(ctx, keys, nil, lv, batchOpts{fullReads: fullReads})
}

// batchOpts is how getBatchPlanned reads its keys.
type batchOpts struct {
	// fullReads false: no key is drawn for a full read-repair read.
	fullReads bool
	// raws, when not nil (as long as the keys), takes the stored bytes of
	// the keys answered without decoding them (see getBatchPlanned).
	raws [][]byte
	// eager[i] set (when not nil): key i is answered as an object even
	// with raws.
	eager []bool
	// ready, when not nil, is called for each key i once it is answered
	// (with what getBatchPlanned returns for it: its object, its stored
	// bytes when answered with them, or its error), on getBatchPlanned's
	// goroutine, as soon as it is, or with alone set when it needs Get's
	// own path, which getBatchPlanned then leaves to ready's caller: a
	// key's answer does not wait for the others'.
	ready func(i int, obj *version.Object, raw []byte, err error, alone bool)
}

// getBatchPlanned is getBatchAt with each key's read plan drawn by the
// caller (plans[i] for keys[i]; nil: drawn here).
//
// With raws non-nil (len(keys) long) a key read from more than one
// replica reads its local state as stored bytes, and decodes them only
// when needed: when every answer agrees with them (a digest read's "same",
// or absent where this replica holds nothing), raws[i] gets those bytes
// and objs[i] stays nil, for a caller that wants only the live value
// (version.DecodeWinner). Otherwise the key is answered in objs as without
// raws.
//
// With o.ready set (a combined call of single reads, readcombine.go),
// each key is handed to ready as soon as it is answered, and the keys that
// need Get's own path (too few answers, or none possible in one go) are
// handed to it to read, instead of being read here.
func (c *Coordinator) getBatchPlanned(ctx context.Context, keys [][]byte, given []readPlan, lv Levels, o batchOpts) (objs []*version.Object, errs []error) {
	objs = make([]*version.Object, len(keys))
	errs = make([]error, len(keys))
	fullReads, raws := o.fullReads, o.raws
	type pending struct {
		local *version.Object
		// raw is the local state's stored bytes (nil: none) when local is
		// decoded only if an answer disagrees (lazy; see raws above).
		raw   []byte
		lazy  bool
		hash  uint64   // the local state's hash, for a digest read
		want  int      // remote answers still needed
		asked []string // remote replicas asked, in order
		// waiting counts the asks whose answers are not in yet.
		waiting int
		done    bool // answered (or handed to Get's path)
		got     []readReply
		same    []bool // got[j] answered "same": its obj is local's, set once local is decoded
		// First storage of asked, got and same (N=3 asks two others).
		askedArr [2]string
		gotArr   [2]readReply
		sameArr  [2]bool
	}
	// gotReply records a replica's answer for p, which was "same" (the
	// local state) when same is true.
	gotReply := func(p *pending, node string, obj *version.Object, same bool) {
		if same {
			obj = p.local
		}
		p.got = append(p.got, readReply{node: node, primary: true, obj: obj})
		p.same = append(p.same, same)
	}
	// The slow path reuses each key's plan: a second plan would draw the
	// full-read chance again.
	plans := make([]readPlan, len(keys))
	var slow []int // keys for Get's own path
	// pend[i] is key i's read in progress here (nil: none), in pendBuf.
	pend := make([]*pending, len(keys))
	pendBuf := make([]pending, 0, len(keys))
	npend := 0 // non-nil entries of pend
	type peerRead struct {
		idx    []int
		keys   [][]byte
		hashes []uint64 // the local states' hashes, for a digest read
	}
	peers := map[string]*peerRead{}
	// addRead adds key i (hash: its local state's) to the message for node
	// in msgs.
	addRead := func(msgs map[string]*peerRead, node string, i int, hash uint64) {
		pr := msgs[node]
		if pr == nil {
			pr = &peerRead{idx: make([]int, 0, len(keys)), keys: make([][]byte, 0, len(keys)), hashes: make([]uint64, 0, len(keys))}
			msgs[node] = pr
		}
		pr.idx = append(pr.idx, i)
		pr.keys = append(pr.keys, keys[i])
		pr.hashes = append(pr.hashes, hash)
	}
	for i, key := range keys {
		var plan readPlan
		if given != nil {
			plan = given[i]
		} else {
			var err error
			if plan, err = c.readPlan(key, lv); err != nil {
				errs[i] = err
				continue
			}
		}
		if !fullReads && plan.full {
			plan.full = false
			plan.localOnly = plan.r == 1 && plan.pr <= 1 && len(plan.dcs) == 0 && contains(plan.rt.pref, c.self)
		}
		plans[i] = plan
		pref, q := plan.rt.pref, plan.r
		// The batched path asks primaries in preference order, whatever
		// their datacenter: a datacenter level takes Get's path.
		// A full read at R=1 takes Get's path, which answers with the local
		// copy without waiting for the others.
		if !contains(pref, c.self) || plan.full && q == 1 && len(pref) > 1 || plan.pr > q || len(plan.dcs) > 0 && !plan.localOnly {
			slow = append(slow, i)
			continue
		}
		var local *version.Object
		var raw []byte
		var hash uint64
		var err error
		// A full read-repair read is lazy too: the replicas that disagree
		// with the stored bytes (or answer late) get them decoded then,
		// for the merge and the repair (finish, repairKey).
		lazy := raws != nil && q > 1 && (o.eager == nil || !o.eager[i])
		if lazy {
			raw, hash, _, err = c.store.GetRaw(key)
		} else {
			local, hash, err = c.store.GetHashed(key)
		}
		if err != nil {
			plans[i].localOnly = false // the local read failed: ask the others
			slow = append(slow, i)
			continue
		}
		if q == 1 {
			if local != nil && local.Empty() {
				local = nil
			}
			objs[i] = local
			continue
		}
		// A full read-repair read asks every live primary in the same
		// messages; it needs only the quorum's answers.
		pendBuf = append(pendBuf, pending{local: local, raw: raw, lazy: lazy, hash: hash, want: q - 1})
		p := &pendBuf[len(pendBuf)-1]
		p.asked, p.got, p.same = p.askedArr[:0], p.gotArr[:0], p.sameArr[:0]
		for _, node := range pref {
			if len(p.asked) == p.want && !plan.full {
				break
			}
			if node == c.self || !c.cluster.Alive(node) {
				continue
			}
			p.asked = append(p.asked, node)
			addRead(peers, node, i, hash)
		}
		if len(p.asked) < p.want {
			slow = append(slow, i) // not enough live replicas to ask in one go
			for _, node := range p.asked {
				peers[node].idx = peers[node].idx[:len(peers[node].idx)-1]
				peers[node].keys = peers[node].keys[:len(peers[node].keys)-1]
				peers[node].hashes = peers[node].hashes[:len(peers[node].hashes)-1]
			}
			pendBuf = pendBuf[:len(pendBuf)-1]
			continue
		}
		pend[i] = p
		npend++
	}

	// readyKey hands key i to o.ready.
	readyKey := func(i int, alone bool) {
		var raw []byte
		if raws != nil {
			raw = raws[i]
		}
		o.ready(i, objs[i], raw, errs[i], alone)
	}
	if o.ready != nil {
		for i := range keys {
			if pend[i] == nil {
				readyKey(i, slices.Contains(slow, i))
			}
		}
	}

	// One message per replica; an answer that is missing or late sends its
	// keys down Get's path (which asks further replicas).
	type peerAnswer struct {
		node string
		idx  []int
		objs []*version.Object
		same []bool // objs[n] is nil and the answer is the local state
		err  error
	}
	answers := make(chan peerAnswer, len(peers))
	// Speculative asks can send more messages than answers holds, so a
	// sender may wait for a reader: this call, or the background reader
	// of the late answers it hands them to. abandoned is closed when the
	// call ends with neither (it panicked), so that no sender waits
	// forever.
	abandoned := make(chan struct{})
	lateOwned := false // the background reader takes the answers still to come
	defer func() {
		if !lateOwned {
			close(abandoned)
		}
	}()
	// A replica that died but is not yet marked down must not eat the whole
	// request's time: the batch waits for the answers half of it, and keys
	// still short of their quorum then go down Get's path with the other
	// half. The messages themselves may run on, like Get's read-repair
	// wait, for RepairTimeout: answers that come after the batch answered
	// are read in the background, for repair only.
	half := c.o.Timeout / 2
	if d, ok := ctx.Deadline(); ok {
		half = time.Until(d) / 2
	}
	waitFor := half
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(half, c.o.RepairTimeout))
	cancelHere := true // false once the background reader owns cancel
	defer func() {
		if cancelHere {
			cancel()
		}
	}()
	sent := 0 // messages sent
	sendRead := func(node string, pr *peerRead) {
		sent++
		for _, i := range pr.idx {
			pend[i].waiting++
		}
		// Encoded here: the message may outlive the call, and the keys
		// are the caller's.
		payload := encodeDigestKeys(pr.keys, pr.hashes)
		n := len(pr.keys)
		go func() {
			// A digest read: a replica whose state hashes as this one's
			// answers "same" instead of sending (and both sides coding) it.
			reply, err := c.call(sctx, node, kindReadBatchDigest, payload)
			var objs []*version.Object
			var same []bool
			switch {
			case err == nil:
				objs, same, err = decodeDigestReply(reply, n)
			case unknownKind(err):
				// A node that predates digest reads: the keys again, from
				// the payload.
				var keys [][]byte
				if keys, _, err = decodeDigestKeys(payload); err != nil {
					break
				}
				if reply, err = c.call(sctx, node, kindReadBatch, encodeKeys(keys)); err == nil {
					objs, err = decodeReadBatchReply(reply, n)
				}
			}
			select {
			case answers <- peerAnswer{node: node, idx: pr.idx, objs: objs, same: same, err: err}:
			case <-abandoned:
			}
		}()
	}
	for node, pr := range peers {
		if len(pr.idx) > 0 {
			sendRead(node, pr)
		}
	}
	// A replica that died but is not yet marked down would hold its keys
	// until half the time is gone: past SpeculativeDelay, each key still
	// short of its quorum with an answer outstanding asks one more primary
	// (as Get's path does), in one message per replica, again after each
	// further SpeculativeDelay while there is one to ask. A key whose ask
	// failed asks the next primary at once, and gives up (for Get's path,
	// below) when none is left and no answer is outstanding.
	askNext := func(i int, p *pending, more map[string]*peerRead) bool {
		for _, node := range plans[i].rt.pref {
			if node == c.self || slices.Contains(p.asked, node) || !c.cluster.Alive(node) {
				continue
			}
			p.asked = append(p.asked, node)
			addRead(more, node, i, p.hash)
			return true
		}
		return false
	}
	sendMore := func(more map[string]*peerRead) {
		for node, pr := range more {
			sendRead(node, pr)
		}
	}
	// decodeLocal decodes p's local state from its stored bytes (a lazy
	// read's) and sets it as the answer of the replicas that answered
	// "same"; false when the bytes do not decode.
	decodeLocal := func(p *pending) bool {
		local, err := version.DecodeObject(p.raw)
		if err != nil {
			return false
		}
		p.local = local
		for j := range p.got {
			if p.same[j] {
				p.got[j].obj = local
			}
		}
		return true
	}
	// agreed reports whether every answer p got agrees with its stored
	// bytes (a lazy read's): "same", or absent where it holds nothing.
	agreed := func(p *pending) bool {
		for j, r := range p.got {
			if !p.same[j] && !(p.raw == nil && r.obj == nil) {
				return false
			}
		}
		return true
	}
	// repaired holds the keys answered with answers still to come: they
	// are repaired once those are in, as Get repairs on a late answer.
	repaired := map[int]*pending{}
	// finish answers key i from its quorum of answers (false: its stored
	// bytes do not decode, and it is left for Get's path).
	finish := func(i int, p *pending) bool {
		p.done = true
		if p.lazy {
			if agreed(p) {
				// Nothing to merge: the local state is the answer.
				raws[i] = p.raw
				if p.waiting > 0 {
					repaired[i] = p
				}
				return true
			}
			if p.raw != nil && !decodeLocal(p) {
				return false // as a failed local read: ask the others
			}
		}
		got := append([]readReply{{node: c.self, primary: true, obj: p.local}}, p.got...)
		merged := mergeReplies(got)
		if p.waiting == 0 {
			c.repairStale(keys[i], got, merged)
		} else {
			repaired[i] = p
		}
		if merged != nil && merged.Empty() {
			merged = nil
		}
		objs[i] = merged
		return true
	}
	// decide answers key i, or leaves it for Get's path when it is short
	// of its quorum (or its stored bytes do not decode), and hands it to
	// o.ready if set.
	decide := func(i int, p *pending) {
		alone := len(p.got) < p.want || !finish(i, p)
		if alone {
			slow = append(slow, i)
		}
		p.done = true
		if o.ready != nil {
			readyKey(i, alone)
		}
	}
	// Stop waiting once every key has its quorum (or has given up): a full
	// read's extra answers are only for repair, and a slow replica must
	// not hold the batch for them. One timer for both the next speculative
	// ask, while there may be one, and the end of the wait.
	end := time.Now().Add(waitFor)
	speculating := c.o.SpeculativeDelay < waitFor
	timer := time.NewTimer(min(c.o.SpeculativeDelay, waitFor))
	defer timer.Stop()
	unmet, received := npend, 0
wait:
	for received < sent && unmet > 0 {
		select {
		case a := <-answers:
			received++
			var more map[string]*peerRead
			for n, i := range a.idx {
				p := pend[i]
				p.waiting--
				had := len(p.got) >= p.want
				if a.err == nil {
					gotReply(p, a.node, a.objs[n], a.same != nil && a.same[n])
				}
				switch {
				case had: // an answer for repair only
				case len(p.got) >= p.want:
					unmet--
					if o.ready != nil {
						decide(i, p) // at once; otherwise after the wait
					}
				case a.err != nil || p.waiting == 0:
					// An ask failed, or every ask answered without the
					// quorum: ask the next primary; with none left and
					// nothing outstanding, the key takes Get's path.
					if more == nil {
						more = map[string]*peerRead{}
					}
					if !askNext(i, p, more) && p.waiting == 0 {
						unmet--
						if o.ready != nil {
							decide(i, p)
						}
					}
				}
			}
			sendMore(more)
		case <-timer.C:
			if !speculating {
				break wait
			}
			more := map[string]*peerRead{}
			for i, p := range pend {
				if p != nil && len(p.got) < p.want && p.waiting > 0 {
					askNext(i, p, more)
				}
			}
			sendMore(more)
			left := time.Until(end)
			speculating = c.o.SpeculativeDelay < left
			if speculating {
				timer.Reset(c.o.SpeculativeDelay)
			} else {
				timer.Reset(max(left, 0))
			}
		case <-ctx.Done():
			break wait
		}
	}
	for i, p := range pend {
		if p != nil && !p.done {
			decide(i, p) // short of its quorum, Get's path reads and repairs it again
		}
	}
	// repairKey repairs the stale primaries of key from p's answers.
	repairKey := func(key []byte, p *pending) {
		if p.lazy && p.local == nil {
			if agreed(p) {
				return // every replica holds what this one does
			}
			if p.raw != nil && !decodeLocal(p) {
				return // its answer was the stored bytes, which do not decode
			}
		}
		got := append([]readReply{{node: c.self, primary: true, obj: p.local}}, p.got...)
		c.repairStale(key, got, mergeReplies(got))
	}
	late := sent - received
	if late == 0 {
		for i, p := range repaired { // every answer is in
			repairKey(keys[i], p)
		}
	} else {
		// pend is no longer read here; the keys are the caller's, so they
		// are copied.
		owned := make(map[int][]byte, len(repaired))
		for i := range repaired {
			owned[i] = bytes.Clone(keys[i])
		}
		cancelHere = false
		lateOwned = true
		go func() {
			defer cancel()
			for range late {
				a := <-answers
				if a.err != nil {
					continue
				}
				for n, i := range a.idx {
					if p := repaired[i]; p != nil {
						gotReply(p, a.node, a.objs[n], a.same != nil && a.same[n])
					}
				}
			}
			for i, p := range repaired {
				repairKey(owned[i], p)
			}
		}()
	}
	if o.ready != nil {
		return objs, errs
	}
	var wg sync.WaitGroup
	for _, i := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			objs[i], errs[i] = c.get(ctx, keys[i], plans[i])
		}()
	}
	wg.Wait()
	return objs, errs
}

// DeliverBatch sends node versions of keys it missed (hints, see
// Options.Hints) as replication messages (kindReplicateBatch, cut at the
// usual bounds), which node merges with version.Merge: delivering a version
// twice changes nothing. It returns how many leading entries node
// acknowledged: all of them, or those before the first that failed. A node
// that refuses a batch message gets the entries one by one, as a write
// would send them. For each acknowledged entry of a key this node stood in
// for as a fallback, it then removes its own copy when the versions of
// that key delivered in the batch cover it (see standin.go).
//
// Hints for a node that has left the ring go to the key's current owners
// instead (see deliverForLeft).
func (c *Coordinator) DeliverBatch(ctx context.Context, node string, keys [][]byte, objs []*version.Object) (int, error) {
	if m, ok := c.cluster.Ring().Member(node); ok && m.State == ring.StateLeft {
		return c.deliverForLeft(ctx, node, keys, objs)
	}
	done, err := c.deliver(ctx, node, keys, objs)
	c.dropStandIns(node, keys[:done], objs[:done])
	return done, err
}

func (c *Coordinator) deliver(ctx context.Context, node string, keys [][]byte, objs []*version.Object) (int, error) {
	done := 0
	for _, m := range splitReplicateBatch(keys, objs) {
		err := c.send(ctx, node, kindReplicateBatch, encodeReplicateBatch(m.keys, m.encoded))
		if err != nil && !isRemote(err) {
			return done, fmt.Errorf("deliver %d hints to %s: %w", len(m.keys), node, err)
		}
		if err != nil {
			for n := range m.keys {
				if err := c.send(ctx, node, kindReplicate, appendReplicate(nil, m.keys[n], m.encoded[n])); err != nil {
					return done, fmt.Errorf("deliver hint of %q to %s: %w", m.keys[n], node, err)
				}
				done++
			}
			continue
		}
		done += len(m.keys)
	}
	return done, nil
}

// deliverForLeft delivers hints for node, which has left the ring, to the
// current owners of each key. A left node handed over what it held before
// it could be stopped, but a write it missed while leaving (it was down or
// cut off, and a fallback stood in for it) counted toward the write's
// quorum: delivered to the left node, the write would leave with it.
// Every owner must acknowledge an entry (this node, when an owner, merges
// it into its own store); entries count as delivered up to the first
// that one owner did not take. This node's stand-in copy of an entry is
// then removed as for any delivery, unless it is an owner.
func (c *Coordinator) deliverForLeft(ctx context.Context, node string, keys [][]byte, objs []*version.Object) (int, error) {
	rg := c.cluster.Ring()
	done := 0
	for i, key := range keys {
		owners := rg.PreferenceForKey(key)
		if len(owners) == 0 {
			c.dropStandIns(node, keys[:done], objs[:done])
			return done, fmt.Errorf("hint of %q for %s, which has left: the ring places no owner", key, node)
		}
		for _, owner := range owners {
			var err error
			if owner == c.self {
				_, _, err = c.store.Apply(key, objs[i])
			} else {
				_, err = c.deliver(ctx, owner, keys[i:i+1], objs[i:i+1])
			}
			if err != nil {
				c.dropStandIns(node, keys[:done], objs[:done])
				return done, fmt.Errorf("hint of %q for %s, which has left: owner %s: %w", key, node, owner, err)
			}
		}
		done++
	}
	c.dropStandIns(node, keys[:done], objs[:done])
	return done, nil
}
