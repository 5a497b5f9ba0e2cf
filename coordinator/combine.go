package coordinator

import (
	"context"
	"fmt"
	"sync"

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
// Combining changes who shares a batch, not what a write promises: each
// write keeps its own route, quorum, verdicts and outcome in checkedWrites
// (as the writes of a pipelined batch do), and a key is never in one
// combined call twice (a second write of a key waits for the next call,
// as it would have waited for the key's lock).

// maxCheckedInFlight bounds the combined checked-write calls running at
// once on a coordinator.
const maxCheckedInFlight = 2

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
	inFlight int
}

// checkedWrite runs one checkable blind write of w (no context, not a
// delete) at quorum q on route rt as checkedWrites would run it alone,
// combined with the concurrent ones. It returns the stored object and
// error, or again set (nothing stored: do the write the read-first way,
// with learned as its context when not nil), as checkedWrites does for
// each of its writes.
//
// When ctx ends while the write waits in the queue, it is taken out
// unsent and ctx's error returned; once it is on its way, the caller
// still waits for its outcome (bounded by Options.Timeout), as a write
// run alone does.
func (c *Coordinator) checkedWrite(ctx context.Context, w replica.Write, q quorum, rt route) (obj *version.Object, again bool, learned version.Clock, err error) {
	call := &checkedCall{w: w, q: q, rt: rt, done: make(chan struct{})}
	cb := &c.combiner
	cb.mu.Lock()
	cb.queue = append(cb.queue, call)
	if cb.inFlight < maxCheckedInFlight {
		cb.inFlight++
		batch := cb.takeLocked()
		cb.mu.Unlock()
		c.runChecked(batch)
	} else {
		cb.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			if cb.remove(call) {
				return nil, false, nil, fmt.Errorf("write %q: %w", w.Key, ctx.Err())
			}
			<-call.done // on its way: its outcome decides
		}
	}
	<-call.done
	return call.obj, call.again, call.learned, call.err
}

// takeLocked takes the next combined call's writes off the queue: in
// queue order, up to maxCheckedCombined, each key once (a later write of
// a key already taken stays queued). cb.mu is held.
func (cb *checkedCombiner) takeLocked() []*checkedCall {
	if len(cb.queue) == 1 {
		batch := cb.queue
		cb.queue = nil
		return batch
	}
	var batch, rest []*checkedCall
	keys := make(map[string]bool, len(cb.queue))
	for _, call := range cb.queue {
		if len(batch) < maxCheckedCombined && !keys[string(call.w.Key)] {
			keys[string(call.w.Key)] = true
			batch = append(batch, call)
		} else {
			rest = append(rest, call)
		}
	}
	cb.queue = rest
	return batch
}

// remove takes call out of the queue; false if it was already taken.
func (cb *checkedCombiner) remove(call *checkedCall) bool {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	for i, q := range cb.queue {
		if q == call {
			cb.queue = append(cb.queue[:i:i], cb.queue[i+1:]...)
			return true
		}
	}
	return false
}

// runChecked runs batch as one checkedWrites call and hands each write its
// outcome; then, while writes are queued, it starts the next combined
// call in a goroutine of its own (keeping the in-flight slot) so that its
// caller returns at once, else it frees the slot.
func (c *Coordinator) runChecked(batch []*checkedCall) {
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
	}
	cb := &c.combiner
	cb.mu.Lock()
	if len(cb.queue) == 0 {
		cb.inFlight--
		cb.mu.Unlock()
		return
	}
	next := cb.takeLocked()
	cb.mu.Unlock()
	go c.runChecked(next)
}
