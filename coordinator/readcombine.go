package coordinator

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/ringkv/ringkv/version"
)

// Combining single reads.
//
// A GET that needs other replicas' answers (R > 1 on a replica) costs,
// sent alone, a goroutine, a timer and a peer message per replica asked,
// and on each replica a handler and a reply of its own. Concurrent ones
// through one coordinator are combined here, the way checked writes are
// (combine.go): while maxReadsInFlight reads are on their way, the reads
// that arrive wait, and go out together as one batched read
// (getBatchPlanned: one digest-read message per replica, the local states
// read as stored bytes and decoded only when an answer disagrees). A read
// that arrives while fewer are in flight goes at once, on Get's own path,
// so a lone client waits for nothing.
//
// Combining changes who shares the messages, not what a read promises:
// each key keeps its own plan (route, R, PR) and is answered, merged and
// read-repaired as GetLiveBatchAt answers a key of a pipelined batch. Each
// read is answered as soon as its own key has its quorum, not when the
// whole call ends; a key whose batched answers cannot give it one takes
// Get's own path at once, on a goroutine of its own. So no read of a call
// waits for another's key. Reads lock nothing, so two reads of one key
// may share a call.
//
// A read that has waited maxReadQueueWait in the queue starts a call of
// its own (with the reads queued with it), so that reads held up by a
// slow replica do not hold up the others for longer than that.

// maxReadsInFlight bounds the single reads and combined read calls running
// at once on a coordinator, except for calls started by reads that waited
// maxReadQueueWait.
const maxReadsInFlight = 2

// maxReadQueueWait is how long a read waits in the queue before it starts
// a call of its own.
const maxReadQueueWait = 20 * time.Millisecond

// maxReadsCombined bounds the reads of one combined call.
const maxReadsCombined = 256

// readCall is one read waiting to be, or being, run as part of a combined
// read: of a key's live value (GetLiveAt), or of its object (GetAt) when
// object is set.
type readCall struct {
	key    []byte
	plan   readPlan
	object bool
	done   chan struct{} // closed once the fields below are set

	answered bool // done is closed
	alone    bool // read on Get's own path, apart from its call
	value    []byte
	found    bool
	obj      *version.Object
	err      error
}

// readCombiner queues single reads for combined calls.
type readCombiner struct {
	mu       sync.Mutex
	queue    []*readCall
	inFlight int // single reads and combined calls running
}

// combinable reports whether a read with plan may be combined: one the
// batched read path answers as Get would (this node a primary of the key,
// more than its own answer needed, no datacenter level, no full
// read-repair read).
func (c *Coordinator) combinable(plan readPlan) bool {
	return !plan.localOnly && !plan.full && plan.r > 1 && len(plan.dcs) == 0 && plan.pr <= plan.r && contains(plan.rt.pref, c.self)
}

// getLiveCombined reads key's live value with plan (combinable), combined
// with the concurrent reads. When ctx ends first, its error is returned
// (a read changes nothing, so the call it is in may run on without it).
func (c *Coordinator) getLiveCombined(ctx context.Context, key []byte, plan readPlan) (value []byte, found bool, err error) {
	value, found, _, err = c.readCombined(ctx, key, plan, false)
	return value, found, err
}

// getCombined is getLiveCombined for a read of key's object, as Get
// answers it.
func (c *Coordinator) getCombined(ctx context.Context, key []byte, plan readPlan) (*version.Object, error) {
	_, _, obj, err := c.readCombined(ctx, key, plan, true)
	return obj, err
}

// readCombined runs one read of key with plan (combinable), of its object
// when object is set and else of its live value.
func (c *Coordinator) readCombined(ctx context.Context, key []byte, plan readPlan, object bool) (value []byte, found bool, obj *version.Object, err error) {
	rc := &c.reads
	rc.mu.Lock()
	if rc.inFlight < maxReadsInFlight && len(rc.queue) == 0 {
		rc.inFlight++
		rc.mu.Unlock()
		defer c.endRead()
		if object {
			obj, err = c.get(ctx, key, plan)
			return nil, false, obj, err
		}
		value, found, err = c.getLiveAlone(ctx, key, plan)
		return value, found, nil, err
	}
	// The key is copied: a caller whose context ends returns while its
	// call may still read (and repair) the key.
	call := &readCall{key: bytes.Clone(key), plan: plan, object: object, done: make(chan struct{})}
	rc.queue = append(rc.queue, call)
	rc.mu.Unlock()
	wait := time.NewTimer(maxReadQueueWait)
	defer wait.Stop()
	for {
		select {
		case <-call.done:
			return call.value, call.found, call.obj, call.err
		case <-wait.C:
			// Waited long enough: start a call (on a goroutine of its own,
			// so that this caller keeps watching its context), and look
			// again later if this read was not taken into it.
			rc.mu.Lock()
			var batch []*readCall
			queued := slices.Contains(rc.queue, call)
			if queued {
				batch = rc.startLocked(true)
			}
			rc.mu.Unlock()
			if batch != nil {
				go c.runReads(batch)
			}
			if queued {
				wait.Reset(maxReadQueueWait)
			}
		case <-ctx.Done():
			rc.remove(call)
			return nil, false, nil, fmt.Errorf("read of %q: %w", key, ctx.Err())
		}
	}
}

// getLiveAlone is GetLiveAt's read of key with plan on Get's own path.
func (c *Coordinator) getLiveAlone(ctx context.Context, key []byte, plan readPlan) ([]byte, bool, error) {
	obj, err := c.get(ctx, key, plan)
	if err != nil {
		return nil, false, err
	}
	c.countSiblings(obj)
	value, found := version.LiveValue(obj)
	return value, found, nil
}

// startLocked takes up to maxReadsCombined reads off the queue for one
// call when a call may start (force: whatever the bound), marking it in
// flight; nil when none may start. rc.mu is held.
func (rc *readCombiner) startLocked(force bool) []*readCall {
	if len(rc.queue) == 0 || !force && rc.inFlight >= maxReadsInFlight {
		return nil
	}
	n := min(len(rc.queue), maxReadsCombined)
	batch := slices.Clone(rc.queue[:n])
	rc.queue = slices.Delete(rc.queue, 0, n)
	rc.inFlight++
	return batch
}

// remove takes call out of the queue, if it is still there.
func (rc *readCombiner) remove(call *readCall) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if i := slices.Index(rc.queue, call); i >= 0 {
		rc.queue = slices.Delete(rc.queue, i, i+1)
	}
}

// endRead ends a single read or combined call and, while reads are
// queued, starts the next call in a goroutine of its own.
func (c *Coordinator) endRead() {
	c.reads.mu.Lock()
	c.reads.inFlight--
	next := c.reads.startLocked(false)
	c.reads.mu.Unlock()
	if next != nil {
		go c.runReads(next)
	}
}

// runReads runs batch (started by startLocked) as one batched read
// (getBatchPlanned), its reads of live values and of objects together, and
// hands each read its answer as soon as it has it. A read that needs Get's
// own path (its batched answers did not come, or were too few) is read on
// a goroutine of its own, at once. The call ends when the batched read
// does. A panic inside it is logged, and each read not yet answered gets
// an error.
func (c *Coordinator) runReads(batch []*readCall) {
	// Not any one caller's context: the call serves them all.
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	var alone sync.WaitGroup
	defer func() {
		if r := recover(); r != nil {
			c.o.Logf("combined read of %d keys panicked: %v\n%s", len(batch), r, debug.Stack())
			for _, call := range batch {
				if !call.alone && !call.answered {
					call.err = fmt.Errorf("read of %q failed inside its combined call", call.key)
					call.answer()
				}
			}
		}
		c.endRead()
		go func() {
			alone.Wait()
			cancel()
		}()
	}()
	keys := make([][]byte, len(batch))
	plans := make([]readPlan, len(batch))
	eager := make([]bool, len(batch))
	var raws [][]byte
	for i, call := range batch {
		keys[i], plans[i], eager[i] = call.key, call.plan, call.object
		if !call.object && raws == nil {
			raws = make([][]byte, len(batch))
		}
	}
	ready := func(i int, obj *version.Object, raw []byte, err error, goAlone bool) {
		call := batch[i]
		switch {
		case goAlone:
		case err != nil:
			call.err = err
			call.answer()
			return
		case call.object:
			call.obj = obj
			call.answer()
			return
		default:
			var again bool
			if call.value, call.found, again = c.liveValue(raw, obj); !again {
				call.answer()
				return
			}
		}
		call.alone = true
		alone.Go(func() { c.readAlone(ctx, call) })
	}
	c.getBatchPlanned(ctx, keys, plans, Levels{}, batchOpts{fullReads: true, raws: raws, eager: eager, ready: ready})
}

// answer hands call its answer, set in its fields.
func (call *readCall) answer() {
	call.answered = true
	close(call.done)
}

// readAlone answers call on Get's own path.
func (c *Coordinator) readAlone(ctx context.Context, call *readCall) {
	defer call.answer()
	if call.object {
		call.obj, call.err = c.get(ctx, call.key, call.plan)
		return
	}
	call.value, call.found, call.err = c.getLiveAlone(ctx, call.key, call.plan)
}
