package transport

import (
	"context"
	"sync"
	"time"
)

// requestContext is a handler's context: the connection's context, the
// caller's deadline (when its request carried one) and the cancellation a
// cancel frame or the handler's end brings.
//
// A context.WithTimeout per request costs a timer and an entry in the
// connection context's children, set up and torn down for every message,
// while most handlers (a replica's reads and applies) never look at their
// context: on a replica serving pipelined reads that was a sixteenth of its
// CPU time. A requestContext answers Deadline and Err from its fields and
// builds that machinery only when Done is first called: a handler that
// waits on it, or derives a context from it (context.WithCancel and the
// like call Done), gets an ordinary deadline context, canceled when the
// request is.
type requestContext struct {
	parent   context.Context
	deadline time.Time // zero: the caller sent none

	mu          sync.Mutex
	err         error              // why it ended, when it ended before Done built inner
	inner       context.Context    // built by the first Done; nil before
	innerCancel context.CancelFunc // inner's
}

// newRequestContext returns a request's context under parent, ending at
// deadline (none if zero), and the function that cancels it.
func newRequestContext(parent context.Context, deadline time.Time) (*requestContext, context.CancelFunc) {
	c := &requestContext{parent: parent, deadline: deadline}
	return c, c.cancel
}

// Deadline is the earlier of the caller's deadline and the parent's.
func (c *requestContext) Deadline() (time.Time, bool) {
	d, ok := c.parent.Deadline()
	if !c.deadline.IsZero() && (!ok || c.deadline.Before(d)) {
		return c.deadline, true
	}
	return d, ok
}

// Done builds the deadline context on its first call and returns its
// channel.
func (c *requestContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		// Built to end as it already has, when it has: a request canceled
		// before its deadline passed must not read as expired in the
		// contexts derived from it (nor one expired as canceled).
		if c.err == context.DeadlineExceeded || c.err == nil && !c.deadline.IsZero() {
			c.inner, c.innerCancel = context.WithDeadline(c.parent, c.deadline)
		} else {
			c.inner, c.innerCancel = context.WithCancel(c.parent)
		}
		if c.err != nil {
			c.innerCancel()
		}
	}
	return c.inner.Done()
}

// Err reports why the context ended: context.Canceled or
// context.DeadlineExceeded (or the parent's error), nil while it runs.
// Once it has reported an error it reports the same one from then on.
func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if c.inner != nil {
		return c.inner.Err()
	}
	c.err = c.endedBy(time.Now())
	return c.err
}

// endedBy returns why the context has ended at now without being canceled
// (the parent ended, or the deadline passed), or nil.
func (c *requestContext) endedBy(now time.Time) error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !c.deadline.IsZero() && !now.Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value looks key up in the deadline context once Done built it (so that
// contexts derived from this one attach to it as to any cancelable
// context), in the parent before.
func (c *requestContext) Value(key any) any {
	c.mu.Lock()
	inner := c.inner
	c.mu.Unlock()
	if inner != nil {
		return inner.Value(key)
	}
	return c.parent.Value(key)
}

// cancel ends the request: a deadline that passed before it still reads as
// context.DeadlineExceeded, as it would from a context's timer.
func (c *requestContext) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil {
		c.innerCancel()
		return
	}
	if c.err == nil {
		if c.err = c.endedBy(time.Now()); c.err == nil {
			c.err = context.Canceled
		}
	}
}

func (c *requestContext) String() string { return "transport.requestContext" }
