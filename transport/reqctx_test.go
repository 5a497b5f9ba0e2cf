package transport

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

// A request's context must behave as the context.WithDeadline it replaces,
// whether or not a handler ever calls Done, and whichever comes first:
// the deadline, the cancel, or the connection's end.
func TestRequestContextEndsAsADeadlineContextWould(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "peer")
	waitDone := func(t *testing.T, ctx context.Context) {
		t.Helper()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done never closed")
		}
	}

	t.Run("deadline, Done never called", func(t *testing.T) {
		ctx, cancel := newRequestContext(parent, time.Now().Add(20*time.Millisecond))
		if ctx.Err() != nil {
			t.Fatalf("Err before the deadline: %v", ctx.Err())
		}
		time.Sleep(30 * time.Millisecond)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err after the deadline: %v, want DeadlineExceeded", ctx.Err())
		}
		cancel() // a late cancel does not turn a passed deadline into Canceled
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err after a late cancel: %v, want DeadlineExceeded", ctx.Err())
		}
		waitDone(t, ctx) // built after the end: closed at once
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err once Done was built: %v, want DeadlineExceeded", ctx.Err())
		}
	})

	t.Run("deadline, waited on", func(t *testing.T) {
		ctx, cancel := newRequestContext(parent, time.Now().Add(20*time.Millisecond))
		defer cancel()
		waitDone(t, ctx)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err: %v, want DeadlineExceeded", ctx.Err())
		}
	})

	t.Run("canceled before Done", func(t *testing.T) {
		ctx, cancel := newRequestContext(parent, time.Now().Add(time.Hour))
		cancel()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("Err: %v, want Canceled", ctx.Err())
		}
		waitDone(t, ctx)
	})

	t.Run("canceled while waited on, with a derived context", func(t *testing.T) {
		ctx, cancel := newRequestContext(parent, time.Time{})
		if _, ok := ctx.Deadline(); ok {
			t.Fatal("a request without a deadline reports one")
		}
		child, childCancel := context.WithTimeout(ctx, time.Hour)
		defer childCancel()
		if d, ok := child.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Fatalf("derived deadline %v %v", d, ok)
		}
		go func() {
			time.Sleep(10 * time.Millisecond)
			cancel()
		}()
		waitDone(t, ctx)
		waitDone(t, child)
		if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
			t.Fatalf("Err: %v and the child's %v, want Canceled", ctx.Err(), child.Err())
		}
		if child.Value(ctxKey{}) != "peer" {
			t.Fatal("a derived context lost the connection's values")
		}
	})

	t.Run("an error, once reported, stays", func(t *testing.T) {
		conn, closeConn := context.WithCancel(parent)
		ctx, cancel := newRequestContext(conn, time.Now().Add(10*time.Millisecond))
		defer cancel()
		time.Sleep(20 * time.Millisecond)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err after the deadline: %v", ctx.Err())
		}
		closeConn()
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err once the connection closed too: %v, want DeadlineExceeded still", ctx.Err())
		}
		waitDone(t, ctx)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("Err once Done was built: %v, want DeadlineExceeded still", ctx.Err())
		}
	})

	t.Run("canceled, then derived from after its deadline", func(t *testing.T) {
		ctx, cancel := newRequestContext(parent, time.Now().Add(10*time.Millisecond))
		cancel()
		time.Sleep(20 * time.Millisecond)
		child, childCancel := context.WithCancel(ctx)
		defer childCancel()
		waitDone(t, child)
		if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) || !errors.Is(context.Cause(child), context.Canceled) {
			t.Fatalf("Err %v, the child's %v (cause %v): want Canceled for all", ctx.Err(), child.Err(), context.Cause(child))
		}
	})

	t.Run("the connection ends", func(t *testing.T) {
		conn, closeConn := context.WithCancel(parent)
		ctx, cancel := newRequestContext(conn, time.Now().Add(time.Hour))
		defer cancel()
		closeConn()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("Err: %v, want the connection's Canceled", ctx.Err())
		}
		waitDone(t, ctx)
	})

	t.Run("values and the earlier deadline", func(t *testing.T) {
		soon := time.Now().Add(time.Minute)
		conn, closeConn := context.WithDeadline(parent, soon)
		defer closeConn()
		ctx, cancel := newRequestContext(conn, time.Now().Add(time.Hour))
		defer cancel()
		if d, ok := ctx.Deadline(); !ok || !d.Equal(soon) {
			t.Fatalf("Deadline %v %v, want the connection's %v", d, ok, soon)
		}
		if ctx.Value(ctxKey{}) != "peer" {
			t.Fatal("Value before Done lost the connection's value")
		}
		ctx.Done()
		if ctx.Value(ctxKey{}) != "peer" {
			t.Fatal("Value after Done lost the connection's value")
		}
	})
}

// Most handlers never wait on their context: a request must then cost no
// timer and no goroutine, and leave nothing behind in the connection's
// context.
func TestRequestContextUnusedCostsOneAllocation(t *testing.T) {
	conn, closeConn := context.WithCancel(context.Background())
	defer closeConn()
	allocs := testing.AllocsPerRun(1000, func() {
		ctx, cancel := newRequestContext(conn, time.Now().Add(time.Second))
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		cancel()
	})
	if allocs > 1 {
		t.Fatalf("%.1f allocations per unused request context, want 1", allocs)
	}
}
