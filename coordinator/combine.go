package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/version"
)

// Combining checked writes.
//
// A client that sends one SET at a time (many such clients, or Redis
// clients without pipelining) makes one checked write per request, and
// sent alone each costs every target a peer message of its own: a
// handler, a decode, a key-lock pass, an engine stage and commit wait,
// and a reply. Concurrent ones are combined here into one checkedWrites
// call (one message per target, one engine batch on each replica), the
// way the engine combines concurrent commits into one fsync: while
// maxCheckedInFlight combined calls are on their way, the writes that
// arrive wait and go out together in the next one. A write that arrives
// while fewer are in flight goes at once, so a lone client waits for
// nothing.
//
// A pipeline's checkable writes (checkedBatch) join the queue together
// (checkedWritesCombined), so that the pipelines of many clients also go
// out in a few fuller calls instead of one call each.
//
// Combining changes who shares a batch, not what a write promises: each
// write keeps its own route, quorum, verdicts and outcome in checkedWrites
// (as the writes of a pipelined batch do). A key is never in two calls at
// once, nor twice in one: a write of a key that a call in flight holds
// waits for that call to end (as it would have waited for the key's lock
// in Prepare, but without holding the other keys of its own call
// meanwhile).
//
// A call ends only when each of its writes is decided, which for a write
// a target refuses means every target's answer: a slow target can keep a
// call in flight up to Options.Timeout. So that unrelated writes are not
// held up behind it, a write that has waited maxCheckedQueueWait in the
// queue starts a call of its own (with the writes queued with it) even
// when the in-flight calls are at their bound, and tries again every
// maxCheckedQueueWait while its key is in a call in flight. A caller runs
// a call on its own goroutine only when its own write is in it.

// maxCheckedInFlight bounds the combined checked-write calls running at
// once on a coordinator, except for calls started by writes that waited
// maxCheckedQueueWait. One, as the engine's group commit: every replica
// applies, and fsyncs, once per call, so fewer and fuller calls cost the
// cluster less. Three nodes, 50 clients sending one SET at a time: 78-82
// us of server CPU per SET with one, 98 with two, and a lower median
// latency (docs/benchmarks.md).
const maxCheckedInFlight = 1

// maxCheckedQueueWait is how long a checked write waits in the queue
// before it starts a call of its own.
const maxCheckedQueueWait = 20 * time.Millisecond

// maxCheckedCombined bounds the writes of one combined call.
const maxCheckedCombined = 256

// checkedCall is one blind write waiting to be, or being, run as part of
// a combined checkedWrites call.
type checkedCall struct {
	w    replica.Write
	q    quorum
	rt   route
	done chan struct{} // closed once the fields below are set

	obj     *version.Object
	err     error
	again   bool
	learned version.Clock
}

// checkedCombiner queues checked writes for combined calls.
type checkedCombiner struct {
	mu       sync.Mutex
	queue    []*checkedCall
	inFlight int                 // combined calls running
	keys     map[string]struct{} // the keys of the calls running
}

// errCheckedNotSent is returned for a checked write whose caller's context
// ended while it was queued: it was never sent or stored.
var errCheckedNotSent = errors.New("checked write not sent: its context ended while it waited for a combined call")

// checkedWrite runs one checkable blind write of w (no context, not a
// delete) at quorum q on route rt as checkedWrites would run it alone,
// combined with the concurrent ones. It returns the stored object and
// error, or again set (nothing stored: do the write the read-first way,
// with learned as its context when not nil), as checkedWrites does for
// each of its writes.
//
// When ctx ends while the write waits in the queue, it is taken out
// unsent and an error wrapping errCheckedNotSent and ctx's error is
// returned; once it is on its way, the caller still waits for its outcome
// (bounded by Options.Timeout), as a write run alone does.
func (c *Coordinator) checkedWrite(ctx context.Context, w replica.Write, q quorum, rt route) (obj *version.Object, again bool, learned version.Clock, err error) {
	call := &checkedCall{w: w, q: q, rt: rt, done: make(chan struct{})}
	c.enqueueChecked([]*checkedCall{call})
	c.awaitChecked(ctx, []*checkedCall{call})
	return call.obj, call.again, call.learned, call.err
}

// checkedWritesCombined is checkedWrite for several writes at once (a
// pipeline's, with no key twice): they join the queue together, so that
// they go in as few combined calls as the queue allows, with the
// concurrent writes of other clients. Its results are checkedWrites'.
func (c *Coordinator) checkedWritesCombined(ctx context.Context, writes []replica.Write, quorums []quorum, routes []route) (objs []*version.Object, errs []error, again []bool, learned []version.Clock) {
	calls := make([]*checkedCall, len(writes))
	for i := range writes {
		calls[i] = &checkedCall{w: writes[i], q: quorums[i], rt: routes[i], done: make(chan struct{})}
	}
	c.enqueueChecked(calls)
	c.awaitChecked(ctx, calls)
	objs, errs = make([]*version.Object, len(calls)), make([]error, len(calls))
	again, learned = make([]bool, len(calls)), make([]version.Clock, len(calls))
	for i, call := range calls {
		objs[i], errs[i], again[i], learned[i] = call.obj, call.err, call.again, call.learned
	}
	return objs, errs, again, learned
}

// enqueueChecked queues calls and starts a combined call if one may
// start, on this goroutine when it holds one of calls (see run).
func (c *Coordinator) enqueueChecked(calls []*checkedCall) {
	cb := &c.combiner
	cb.mu.Lock()
	cb.queue = append(cb.queue, calls...)
	batch := cb.startLocked(false)
	cb.mu.Unlock()
	c.run(batch, calls...)
}

// awaitChecked waits until each of calls (queued by enqueueChecked) has
// its outcome, in its fields. While one of them is still queued after
// maxCheckedQueueWait and its key is in no call in flight, it starts a
// call (see maxCheckedInFlight), and so again every maxCheckedQueueWait.
// When ctx ends, the calls still queued are taken out unsent, with an
// error wrapping errCheckedNotSent and ctx's error; the others are on
// their way, and their outcomes decide (bounded by Options.Timeout), as
// for a write run alone.
func (c *Coordinator) awaitChecked(ctx context.Context, calls []*checkedCall) {
	pending := calls
	// settled drops the calls at the head of pending that have their
	// outcome; false when none is left.
	settled := func() bool {
		for len(pending) > 0 {
			select {
			case <-pending[0].done:
				pending = pending[1:]
				continue
			default:
			}
			return true
		}
		return false
	}
	if !settled() { // it went at once: no timer
		return
	}
	cb := &c.combiner
	wait := time.NewTimer(maxCheckedQueueWait)
	defer wait.Stop()
	for {
		select {
		case <-pending[0].done:
			if !settled() {
				return
			}
		case <-wait.C:
			cb.mu.Lock()
			var batch []*checkedCall
			for _, call := range pending {
				if _, busy := cb.keys[string(call.w.Key)]; !busy && cb.queuedLocked(call) {
					batch = cb.startLocked(true)
					break
				}
			}
			cb.mu.Unlock()
			c.run(batch, pending...)
			// Still queued (their keys are in a call in flight, or too
			// many writes were queued before them), or on their way: look
			// again later.
			wait.Reset(maxCheckedQueueWait)
		case <-ctx.Done():
			for _, call := range pending {
				if cb.remove(call) {
					// Taken out of the queue: no call will have it.
					call.err = fmt.Errorf("%w: %w", errCheckedNotSent, ctx.Err())
					close(call.done)
				}
			}
			for _, call := range pending {
				<-call.done // on its way: its outcome decides
			}
			return
		}
	}
}

// run runs batch (nil: nothing) for the caller of calls: on the caller's
// goroutine when one of calls is in it, else on a goroutine of its own, so
// that the caller keeps waiting for its own writes (and its context).
func (c *Coordinator) run(batch []*checkedCall, calls ...*checkedCall) {
	if batch == nil {
		return
	}
	for _, call := range calls {
		if slices.Contains(batch, call) {
			c.runChecked(batch)
			return
		}
	}
	go c.runChecked(batch)
}

// startLocked takes the next combined call's writes off the queue when a
// call may start (force: whatever the bound), marking it in flight; nil
// when none may start or every queued write's key is in flight. cb.mu is
// held.
func (cb *checkedCombiner) startLocked(force bool) []*checkedCall {
	if len(cb.queue) == 0 || !force && cb.inFlight >= maxCheckedInFlight {
		return nil
	}
	batch := cb.takeLocked()
	if len(batch) == 0 {
		return nil
	}
	cb.inFlight++
	if cb.keys == nil {
		cb.keys = make(map[string]struct{})
	}
	for _, call := range batch {
		cb.keys[string(call.w.Key)] = struct{}{}
	}
	return batch
}

// takeLocked takes writes off the queue for one call: in queue order, up
// to maxCheckedCombined, each key once and none of a call in flight (the
// others stay queued, in order). cb.mu is held.
func (cb *checkedCombiner) takeLocked() []*checkedCall {
	if len(cb.queue) == 1 { // a lone write: no map to build
		if _, busy := cb.keys[string(cb.queue[0].w.Key)]; busy {
			return nil
		}
		batch := cb.queue
		cb.queue = nil
		return batch
	}
	var batch, rest []*checkedCall
	taken := make(map[string]bool, len(cb.queue))
	for _, call := range cb.queue {
		_, busy := cb.keys[string(call.w.Key)]
		if len(batch) < maxCheckedCombined && !busy && !taken[string(call.w.Key)] {
			taken[string(call.w.Key)] = true
			batch = append(batch, call)
		} else {
			rest = append(rest, call)
		}
	}
	cb.queue = rest
	return batch
}

// queuedLocked reports whether call is still queued. cb.mu is held.
func (cb *checkedCombiner) queuedLocked(call *checkedCall) bool {
	return slices.Contains(cb.queue, call)
}

// remove takes call out of the queue; false if it was already taken.
func (cb *checkedCombiner) remove(call *checkedCall) bool {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if i := slices.Index(cb.queue, call); i >= 0 {
		cb.queue = slices.Delete(cb.queue, i, i+1)
		return true
	}
	return false
}

// runChecked runs batch (started by startLocked) as one checkedWrites call
// and hands each write its outcome; then it ends the call and, while
// writes are queued, starts the next one in a goroutine of its own, so
// that its caller returns at once. Should checkedWrites panic, each write
// of the batch gets an error and the call still ends before the panic
// goes on.
func (c *Coordinator) runChecked(batch []*checkedCall) {
	delivered := 0 // batch[:delivered] have their outcome
	defer func() {
		for _, call := range batch[delivered:] { // only after a panic
			call.err = fmt.Errorf("%w: the checked write failed inside its combined call", ErrUnknownOutcome)
			close(call.done)
		}
		if next := c.combiner.end(batch); next != nil {
			go c.runChecked(next)
		}
	}()
	writes := make([]replica.Write, len(batch))
	quorums := make([]quorum, len(batch))
	routes := make([]route, len(batch))
	for i, call := range batch {
		writes[i], quorums[i], routes[i] = call.w, call.q, call.rt
	}
	// Not any one caller's context: the call serves them all, and
	// checkedWrites bounds its own wait by Options.Timeout.
	objs, errs, again, ctxs := c.checkedWrites(context.Background(), writes, quorums, routes)
	for i, call := range batch {
		if objs != nil {
			call.obj = objs[i]
		}
		call.err, call.again, call.learned = errs[i], again[i], ctxs[i]
		close(call.done)
		delivered = i + 1
	}
}

// end marks batch's call as ended and returns the next call to start, if
// writes are queued.
func (cb *checkedCombiner) end(batch []*checkedCall) []*checkedCall {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.inFlight--
	for _, call := range batch {
		delete(cb.keys, string(call.w.Key))
	}
	return cb.startLocked(false)
}
