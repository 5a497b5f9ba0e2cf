package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/version"
)

func newNode(t *testing.T, st httpapi.Store) *httptest.Server {
	t.Helper()
	view := staticView{NodeID: "n1", Partitions: 8, Replicas: 3, Members: []httpapi.MemberStatus{{ID: "n1", State: "normal", Alive: true}}}
	srv := httptest.NewServer(httpapi.NewHandler(st, view, httpapi.Options{}))
	t.Cleanup(srv.Close)
	return srv
}

type staticView httpapi.ClusterStatus

func (v staticView) Status() httpapi.ClusterStatus { return httpapi.ClusterStatus(v) }

// deadAddr returns an address nothing listens on (a closed listener).
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRoundTrip(t *testing.T) {
	st := httpapi.NewMemoryStore("n1~7")
	srv := newNode(t, st)
	c := New([]string{srv.URL}, Options{})
	ctx := context.Background()
	key := []byte("dir/../x y.\xff")

	tok, err := c.Put(ctx, key, []byte("hello"), "", WithW("ONE"))
	if err != nil || tok == "" {
		t.Fatalf("Put: %q %v", tok, err)
	}
	res, err := c.Get(ctx, key, WithR("quorum"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Context != tok || len(res.Siblings) != 1 {
		t.Fatalf("Get: %+v", res)
	}
	s := res.Siblings[0]
	if string(s.Value) != "hello" || s.Node != "n1" || s.Incarnation != 7 || s.Counter != 1 || time.Since(s.Timestamp) > time.Minute {
		t.Fatalf("sibling %+v", s)
	}
	// The key reached the store byte for byte.
	if o, _ := st.Get(ctx, key, 0); o == nil {
		t.Fatal("key escaped wrongly")
	}
	// Empty values are values.
	if _, err := c.Put(ctx, []byte("empty"), nil, ""); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Get(ctx, []byte("empty")); err != nil || len(res.Siblings) != 1 || len(res.Siblings[0].Value) != 0 {
		t.Fatalf("empty value: %+v %v", res, err)
	}

	st2, err := c.Cluster(ctx)
	if err != nil || st2.NodeID != "n1" || st2.Partitions != 8 || len(st2.Members) != 1 || !st2.Members[0].Alive {
		t.Fatalf("Cluster: %+v %v", st2, err)
	}
}

func TestNotFoundAndDelete(t *testing.T) {
	srv := newNode(t, httpapi.NewMemoryStore("n1"))
	c := New([]string{strings.TrimPrefix(srv.URL, "http://")}, Options{}) // bare host:port
	ctx := context.Background()

	res, err := c.Get(ctx, []byte("k"))
	if !errors.Is(err, ErrNotFound) || res == nil || res.Context != "" {
		t.Fatalf("absent: %+v %v", res, err)
	}
	tok, _ := c.Put(ctx, []byte("k"), []byte("v"), "")
	if err := c.Delete(ctx, []byte("k"), tok); err != nil {
		t.Fatal(err)
	}
	res, err = c.Get(ctx, []byte("k"))
	if !errors.Is(err, ErrNotFound) || res == nil || res.Context == "" {
		t.Fatalf("deleted: %+v %v", res, err)
	}
	// The tombstone's context orders the next write after the delete.
	if _, err := c.Put(ctx, []byte("k"), []byte("again"), res.Context); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Get(ctx, []byte("k")); err != nil || len(res.Siblings) != 1 || string(res.Siblings[0].Value) != "again" {
		t.Fatalf("after rewrite: %+v %v", res, err)
	}
}

func TestSiblingsCollapse(t *testing.T) {
	st := httpapi.NewMemoryStore("n1")
	srv := newNode(t, st)
	c := New([]string{srv.URL}, Options{})
	ctx := context.Background()
	key := []byte("cart")

	if _, err := c.Put(ctx, key, []byte("apple"), ""); err != nil {
		t.Fatal(err)
	}
	// A concurrent write coordinated by another replica arrives.
	var other version.Object
	other.Write("n2", nil, []byte("pear"), false, time.Now().UnixNano())
	st.Merge(key, &other)

	res, err := c.Get(ctx, key)
	if err != nil || len(res.Siblings) != 2 {
		t.Fatalf("Get: %+v %v", res, err)
	}
	var vals []string
	for _, s := range res.Siblings {
		vals = append(vals, string(s.Value))
	}
	if strings.Join(vals, ",") != "apple,pear" {
		t.Fatalf("siblings %v", vals)
	}
	if l, ok := res.Latest(); !ok || l.Value == nil {
		t.Fatal("Latest")
	}

	// A write with a stale context leaves the unseen sibling, and
	// PutResult shows it.
	stale, err := c.PutResult(ctx, key, []byte("plum"), "")
	if err != nil {
		t.Fatal(err)
	}
	_ = stale // a blind write on the only replica supersedes everything it holds

	// Build the conflict again, then resolve it with the read's context.
	other = version.Object{}
	other.Write("n3", nil, []byte("fig"), false, time.Now().UnixNano())
	st.Merge(key, &other)
	res, _ = c.Get(ctx, key)
	if len(res.Siblings) != 2 {
		t.Fatalf("conflict: %+v", res)
	}
	// Writing with an older context keeps the concurrent "fig".
	pr, err := c.PutResult(ctx, key, []byte("kiwi"), stale.Context)
	if err != nil || len(pr.Siblings) != 2 {
		t.Fatalf("stale write: %+v %v", pr, err)
	}
	res, _ = c.Get(ctx, key)
	tok, err := c.Put(ctx, key, []byte("fig+kiwi"), res.Context)
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.Get(ctx, key)
	if err != nil || len(res.Siblings) != 1 || string(res.Siblings[0].Value) != "fig+kiwi" || res.Context != tok {
		t.Fatalf("after collapse: %+v %v", res, err)
	}
}

func TestFailover(t *testing.T) {
	srv := newNode(t, httpapi.NewMemoryStore("n1"))
	dead := deadAddr(t)
	c := New([]string{dead, srv.URL}, Options{Timeout: 2 * time.Second})
	ctx := context.Background()
	// Several calls, so the round-robin start hits the dead node first at
	// least once for each kind of request.
	for i := range 4 {
		if _, err := c.Put(ctx, []byte("k"), []byte{byte(i)}, ""); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		if res, err := c.Get(ctx, []byte("k")); err != nil || !bytes.Equal(res.Siblings[0].Value, []byte{byte(i)}) {
			t.Fatalf("Get %d: %+v %v", i, res, err)
		}
		if _, err := c.Cluster(ctx); err != nil {
			t.Fatalf("Cluster %d: %v", i, err)
		}
	}

	// All nodes down: the error names them.
	c = New([]string{dead, deadAddr(t)}, Options{})
	_, err := c.Get(ctx, []byte("k"))
	if err == nil || !strings.Contains(err.Error(), "all 2 tried nodes failed") || !strings.Contains(err.Error(), dead) {
		t.Fatalf("all down: %v", err)
	}
	if New(nil, Options{}).Delete(ctx, []byte("k"), "") == nil {
		t.Fatal("no addresses: want an error")
	}
}

// failing answers every call with err and counts them.
type failing struct {
	err   error
	calls atomic.Int32
}

func (f *failing) Get(context.Context, []byte, int) (*version.Object, error) {
	f.calls.Add(1)
	return nil, f.err
}

func (f *failing) Put(context.Context, []byte, []byte, version.Clock, int) (*version.Object, error) {
	f.calls.Add(1)
	return nil, f.err
}

func (f *failing) Delete(context.Context, []byte, version.Clock, int) (*version.Object, error) {
	f.calls.Add(1)
	return nil, f.err
}

func TestServerErrors(t *testing.T) {
	qe := &coordinator.QuorumError{Op: "read", Needed: 2, Answered: 1, Replicas: 3}
	bad := &failing{err: qe}
	badSrv := newNode(t, bad)
	good := newNode(t, httpapi.NewMemoryStore("n1"))
	ctx := context.Background()

	// Only the failing node: the quorum error comes back with its counts.
	c := New([]string{badSrv.URL}, Options{})
	_, err := c.Get(ctx, []byte("k"))
	var e *Error
	if !errors.Is(err, ErrQuorum) || !errors.As(err, &e) || e.Status != 503 ||
		e.ReplicasAnswered != 1 || e.ReplicasNeeded != 2 || e.Replicas != 3 || !strings.Contains(e.Message, "quorum") {
		t.Fatalf("quorum error: %#v", err)
	}

	// Reads fail over on 5xx; writes that reached a node do not.
	c = New([]string{badSrv.URL, good.URL}, Options{})
	for range 2 {
		if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("read failover: %v", err)
		}
	}
	// With NoWriteRetry, a 5xx answer to a write is returned.
	c = New([]string{badSrv.URL, good.URL}, Options{NoWriteRetry: true})
	before := bad.calls.Load()
	var failed int
	for range 2 {
		if _, err := c.Put(ctx, []byte("k"), []byte("v"), ""); err != nil {
			if !errors.Is(err, ErrQuorum) {
				t.Fatalf("write error %v", err)
			}
			failed++
		}
	}
	if failed != 1 || bad.calls.Load() != before+1 {
		t.Fatalf("writes: %d failed, %d calls to the failing node", failed, bad.calls.Load()-before)
	}
	// By default, writes fail over on 5xx too.
	c = New([]string{badSrv.URL, good.URL}, Options{})
	before = bad.calls.Load()
	for i := range 2 {
		if _, err := c.Put(ctx, []byte("k"), []byte("v"), ""); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if bad.calls.Load() != before+1 {
		t.Fatalf("%d calls to the failing node, want 1 (round-robin starts there once)", bad.calls.Load()-before)
	}

	// 4xx answers are returned as they are: a bad level.
	c = New([]string{good.URL}, Options{})
	_, err = c.Get(ctx, []byte("k"), WithR("MOST"))
	if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(err.Error(), "MOST") {
		t.Fatalf("bad level: %v", err)
	}
	_, err = c.Put(ctx, []byte("k"), []byte("v"), "not-a-token!")
	if !errors.As(err, &e) || e.Status != 400 {
		t.Fatalf("bad token: %v", err)
	}
	// A refused write (4xx) is final: it is not tried on the next node.
	spy := &failing{err: errors.New("unused")}
	spySrv := newNode(t, spy)
	c = New([]string{good.URL, spySrv.URL}, Options{})
	for range 2 {
		if _, err := c.Put(ctx, []byte("k"), []byte("v"), "not-a-token!"); !errors.As(err, &e) || e.Status != 400 {
			t.Fatalf("bad token with two nodes: %v", err)
		}
	}
	if spy.calls.Load() != 0 {
		t.Fatalf("a refused write reached the next node's store %d times", spy.calls.Load())
	}
}

// breakAfterApplying serves the API over st, but for writes it applies
// the write and then closes the connection without answering: the client
// cannot know the write's outcome.
func breakAfterApplying(t *testing.T, st httpapi.Store) *httptest.Server {
	t.Helper()
	h := httpapi.NewHandler(st, staticView{NodeID: "n1", Partitions: 8, Replicas: 3}, httpapi.Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(httptest.NewRecorder(), r) // applied; the answer is lost
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A write whose connection broke after the node applied it is retried on
// the next node under the same write ID, and stored once: when the first
// node's copy reaches the second, the two attempts are one sibling, for a
// blind write and for a write with a read's context alike. With
// NoWriteRetry the error comes back and the next node never sees the
// write.
func TestWriteRetriedWhenItsOutcomeIsUnknown(t *testing.T) {
	ctx := context.Background()
	key := []byte("k")

	third := httpapi.NewMemoryStore("n3")
	strict := New([]string{breakAfterApplying(t, httpapi.NewMemoryStore("n0")).URL, newNode(t, third).URL}, Options{NoWriteRetry: true})
	var errs int
	for range 2 {
		if _, err := strict.Put(ctx, key, []byte("v"), ""); err != nil {
			errs++
		}
	}
	if errs != 1 || third.Len() != 1 {
		t.Fatalf("NoWriteRetry: %d errors (want 1), %d keys on the next node (want 1: only the call that started there)", errs, third.Len())
	}

	for _, withContext := range []bool{false, true} {
		first, second := httpapi.NewMemoryStore("n1"), httpapi.NewMemoryStore("n2")
		token := ""
		if withContext {
			// Both nodes hold "old", which the client read.
			old, err := first.Put(ctx, key, []byte("old"), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			second.Merge(key, old)
			token = version.ClockToString(old.Context)
		}
		c := New([]string{breakAfterApplying(t, first).URL, newNode(t, second).URL}, Options{Timeout: 2 * time.Second})
		if _, err := c.Put(ctx, key, []byte("v"), token); err != nil { // starts at the broken node
			t.Fatalf("Put (context %v): %v", withContext, err)
		}
		a, _ := first.Get(ctx, key, 0)
		b, _ := second.Get(ctx, key, 0)
		if len(a.Live()) != 1 || len(b.Live()) != 1 || a.Live()[0].WriteID == 0 || a.Live()[0].WriteID != b.Live()[0].WriteID {
			t.Fatalf("context %v: first node %v, second %v: want the write on both, under one write ID", withContext, a, b)
		}
		second.Merge(key, a) // replication brings the first copy over
		res, err := New([]string{newNode(t, second).URL}, Options{}).Get(ctx, key)
		if err != nil || len(res.Siblings) != 1 || string(res.Siblings[0].Value) != "v" {
			t.Fatalf("context %v: Get after the retried write: %+v %v, want v once", withContext, res, err)
		}
		// The same attempt arriving again changes nothing.
		before, _ := second.Get(ctx, key, 0)
		second.Merge(key, a)
		if after, _ := second.Get(ctx, key, 0); !after.Equal(before) {
			t.Fatalf("context %v: the first attempt, merged again: %v -> %v", withContext, before, after)
		}
	}
}

// A write whose 2xx answer was cut short has a known outcome: it is not
// sent to another node.
func TestWriteAnsweredButCutShortIsNotRetried(t *testing.T) {
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"key":`)) // then the connection closes
	}))
	t.Cleanup(cut.Close)
	next := httpapi.NewMemoryStore("n2")
	c := New([]string{cut.URL, newNode(t, next).URL}, Options{})
	var errs int
	for range 2 { // one call starts at the cut node
		if _, err := c.Put(context.Background(), []byte("k"), []byte("v"), ""); err != nil {
			if !strings.Contains(err.Error(), "status 200") {
				t.Fatalf("cut answer: %v", err)
			}
			errs++
		}
	}
	if o, _ := next.Get(context.Background(), []byte("k"), 0); errs != 1 || len(o.Siblings) != 1 {
		t.Fatalf("%d errors (want 1), next node holds %v (want the one write that started there)", errs, o)
	}
}
