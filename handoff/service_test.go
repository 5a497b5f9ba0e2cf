package handoff

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/version"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeDeliverer records what it is sent; fail, if set, decides each call's
// outcome (entries acknowledged, error).
type fakeDeliverer struct {
	mu    sync.Mutex
	calls int
	got   map[string][]string // node -> keys, in delivery order
	fail  func(call int, keys [][]byte) (int, error)
}

func (d *fakeDeliverer) DeliverBatch(ctx context.Context, node string, keys [][]byte, objs []*version.Object) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	n, err := len(keys), error(nil)
	if d.fail != nil {
		n, err = d.fail(d.calls, keys)
	}
	if d.got == nil {
		d.got = map[string][]string{}
	}
	for _, k := range keys[:n] {
		d.got[node] = append(d.got[node], string(k))
	}
	return n, err
}

func (d *fakeDeliverer) delivered(node string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got[node]...)
}

func openStore(t *testing.T, dir string) (*replica.Store, *storage.DB) {
	t.Helper()
	db, err := storage.Open(dir, &storage.Options{Sync: storage.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	return replica.New(db, version.Actor("n1", 1)), db
}

func testObject(t *testing.T, value string) *version.Object {
	t.Helper()
	o := &version.Object{}
	if _, err := o.WriteBlind(version.Actor("n1", 1), []byte(value), false, 1); err != nil {
		t.Fatal(err)
	}
	return o
}

func newTestService(t *testing.T, o Options) (*Service, *replica.Store, *fakeClock) {
	t.Helper()
	st, db := openStore(t, t.TempDir())
	clk := &fakeClock{now: t0}
	o.Now = clk.Now
	o.Tick = make(chan time.Time) // passes only when the test calls Pass
	s, err := Open(st, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); db.Close() })
	return s, st, clk
}

func addN(t *testing.T, s *Service, target string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		// Keys in descending order: delivery must follow hint order, not
		// key order.
		k := fmt.Sprintf("key-%03d", 999-i)
		s.Add(target, [][]byte{[]byte(k)}, []*version.Object{testObject(t, k)})
	}
}

func storedHints(t *testing.T, st *replica.Store) int {
	t.Helper()
	n := 0
	if err := st.ScanHints(nil, nil, func(k, v []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestServiceDeliversOldestFirstInBatchesAndDeletesDelivered(t *testing.T) {
	s, st, _ := newTestService(t, Options{BatchEntries: 4})
	addN(t, s, "n2", 0, 10)
	addN(t, s, "n3", 0, 2)
	d := &fakeDeliverer{}
	s.Start(d, func(id string) bool { return id == "n2" })
	s.Pass(context.Background())
	got := d.delivered("n2")
	if len(got) != 10 {
		t.Fatalf("delivered %d hints to n2, want 10", len(got))
	}
	for i, k := range got {
		if want := fmt.Sprintf("key-%03d", 999-i); k != want {
			t.Fatalf("hint %d delivered = %s, want %s (oldest first)", i, k, want)
		}
	}
	if d.calls != 3 {
		t.Fatalf("%d delivery calls for 10 hints in batches of 4, want 3", d.calls)
	}
	if len(d.delivered("n3")) != 0 {
		t.Fatal("hints delivered to a target that is not alive")
	}
	stats := s.Stats()
	if stats["n2"].Pending != 0 || stats["n2"].Bytes != 0 {
		t.Fatalf("n2 stats after delivery = %+v", stats["n2"])
	}
	if stats["n3"].Pending != 2 {
		t.Fatalf("n3 stats = %+v, want 2 pending", stats["n3"])
	}
	if n := storedHints(t, st); n != 2 {
		t.Fatalf("%d hints stored after delivery, want n3's 2", n)
	}
}

func TestServiceKeepsUnacknowledgedHintsAndBacksOff(t *testing.T) {
	s, st, clk := newTestService(t, Options{BatchEntries: 4, Interval: time.Second, BackoffMax: 4 * time.Second})
	addN(t, s, "n2", 0, 6)
	d := &fakeDeliverer{fail: func(call int, keys [][]byte) (int, error) {
		switch call {
		case 1:
			return 2, errors.New("link cut") // half the batch acknowledged
		case 2:
			return 0, errors.New("still cut")
		}
		return len(keys), nil
	}}
	s.Start(d, func(string) bool { return true })

	s.Pass(context.Background())
	if n := storedHints(t, st); n != 4 {
		t.Fatalf("%d hints stored after 2 of 6 were acknowledged, want 4", n)
	}
	stats := s.Stats()["n2"]
	if stats.Pending != 4 || stats.LastError != "link cut" || !stats.RetryAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("stats after a failure = %+v", stats)
	}
	s.Pass(context.Background()) // still backing off
	if d.calls != 1 {
		t.Fatalf("delivery retried during the backoff (%d calls)", d.calls)
	}
	clk.Advance(time.Second)
	s.Pass(context.Background())
	if stats := s.Stats()["n2"]; stats.LastError != "still cut" || !stats.RetryAt.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("stats after a second failure = %+v, want a retry 2s later", stats)
	}
	clk.Advance(2 * time.Second)
	s.Pass(context.Background())
	if stats := s.Stats()["n2"]; stats.Pending != 0 || stats.LastError != "" {
		t.Fatalf("stats after success = %+v", stats)
	}
	got := d.delivered("n2")
	if len(got) != 6 || got[2] != "key-997" {
		t.Fatalf("delivered %v, want all 6 in order with no gap after the partial batch", got)
	}
	if n := storedHints(t, st); n != 0 {
		t.Fatalf("%d hints left", n)
	}
}

func TestServiceRefusesHintsPastByteBound(t *testing.T) {
	obj := testObject(t, "v")
	size := recordSize(mustKey(t, "n2", 0, []byte("key-000")), encodeValue(t0, obj))
	s, st, _ := newTestService(t, Options{MaxBytes: 5*size + size/2})
	for i := range 8 {
		s.Add("n2", [][]byte{[]byte(fmt.Sprintf("key-%03d", i))}, []*version.Object{obj})
	}
	stats := s.Stats()["n2"]
	if stats.Pending != 5 || stats.Refused != 3 || stats.Bytes != 5*size {
		t.Fatalf("stats = %+v, want 5 pending (%d bytes), 3 refused", stats, 5*size)
	}
	if n := storedHints(t, st); n != 5 {
		t.Fatalf("%d hints stored, want 5: refused hints must not be queued", n)
	}
}

func TestServiceWindowRefusesHintsForLongDownTarget(t *testing.T) {
	s, _, clk := newTestService(t, Options{Window: time.Hour})
	addN(t, s, "n2", 0, 1)
	clk.Advance(2 * time.Hour)
	addN(t, s, "n2", 1, 3)
	addN(t, s, "n3", 0, 1) // n3 had nothing pending: its window starts now
	stats := s.Stats()
	if stats["n2"].Pending != 1 || stats["n2"].Refused != 3 {
		t.Fatalf("n2 stats = %+v, want 1 pending, 3 refused", stats["n2"])
	}
	if stats["n3"].Pending != 1 || stats["n3"].Refused != 0 {
		t.Fatalf("n3 stats = %+v", stats["n3"])
	}
}

func TestServiceRateLimitsDelivery(t *testing.T) {
	obj := testObject(t, "v")
	size := recordSize(mustKey(t, "n2", 0, []byte("key-000")), encodeValue(t0, obj))
	s, _, clk := newTestService(t, Options{Rate: 3 * size, BatchEntries: 1})
	for i := range 10 {
		s.Add("n2", [][]byte{[]byte(fmt.Sprintf("key-%03d", i))}, []*version.Object{obj})
	}
	d := &fakeDeliverer{}
	s.Start(d, func(string) bool { return true })
	s.Pass(context.Background())
	if n := len(d.delivered("n2")); n != 3 {
		t.Fatalf("first pass delivered %d hints, want the rate's 3", n)
	}
	s.Pass(context.Background()) // no time passed: no budget
	if n := len(d.delivered("n2")); n != 3 {
		t.Fatalf("a pass with no budget delivered (%d in all)", n)
	}
	clk.Advance(time.Second)
	s.Pass(context.Background())
	if n := len(d.delivered("n2")); n != 6 {
		t.Fatalf("after 1s, %d delivered in all, want 6", n)
	}
}

// openServiceAt opens the store in dir and a hint service over it, driven
// by clk and ticked only by hand.
func openServiceAt(t *testing.T, dir string, clk *fakeClock) (*Service, *replica.Store, *storage.DB) {
	t.Helper()
	st, db := openStore(t, dir)
	s, err := Open(st, Options{Now: clk.Now, Tick: make(chan time.Time)})
	if err != nil {
		t.Fatalf("open the hint service: %v", err)
	}
	return s, st, db
}

func TestServiceReopenRecountsStoredHintsAndKeepsOrder(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	s, _, db := openServiceAt(t, dir, clk)
	addN(t, s, "n2", 0, 3)
	before := s.Stats()["n2"]
	s.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, _, db = openServiceAt(t, dir, clk)
	defer db.Close()
	defer s.Close()
	if after := s.Stats()["n2"]; after.Pending != before.Pending || after.Bytes != before.Bytes {
		t.Fatalf("stats after reopen = %+v, before = %+v", after, before)
	}
	addN(t, s, "n2", 3, 2) // sequence numbers continue past the stored ones
	d := &fakeDeliverer{}
	s.Start(d, func(string) bool { return true })
	s.Pass(context.Background())
	got := d.delivered("n2")
	for i, k := range got {
		if want := fmt.Sprintf("key-%03d", 999-i); k != want {
			t.Fatalf("delivered %v: hint %d is %s, want %s", got, i, k, want)
		}
	}
	if len(got) != 5 {
		t.Fatalf("delivered %d, want 5", len(got))
	}
}

func TestServiceAddAfterCloseKeepsNothing(t *testing.T) {
	s, st, _ := newTestService(t, Options{})
	s.Close()
	addN(t, s, "n2", 0, 1)
	if n := storedHints(t, st); n != 0 || s.Stats()["n2"].Pending != 0 {
		t.Fatalf("hint kept after Close")
	}
}

// An unreadable hint record (damaged, or from a newer release) does not
// keep the node from starting: Open drops it and counts the good ones.
func TestOpenDropsUnreadableHintRecords(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{now: t0}
	s, st, db := openServiceAt(t, dir, clk)
	addN(t, s, "n2", 0, 2)
	s.Close()
	bad := mustKey(t, "n2", 1<<40, []byte("future"))
	if err := st.PutHints([][]byte{bad, []byte("\x01")}, [][]byte{{2, 0}, {1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, st, db = openServiceAt(t, dir, clk) // with unreadable hint records
	defer db.Close()
	defer s.Close()
	if got := s.Stats()["n2"].Pending; got != 2 {
		t.Fatalf("pending after dropping the bad records = %d, want 2", got)
	}
	if n := storedHints(t, st); n != 2 {
		t.Fatalf("%d hint records stored, want the 2 good ones", n)
	}
}

// A target longer than a record's one-byte length is refused, never
// stored under a truncated length (which would file its hints under
// another target's range).
func TestHintsForAnOverlongTargetAreRefused(t *testing.T) {
	s, st, _ := newTestService(t, Options{})
	long := string(make([]byte, 256))
	obj := testObject(t, "v")
	if err := s.Keep(long, [][]byte{[]byte("k")}, []*version.Object{obj}); err == nil {
		t.Fatal("Keep for a 256-byte target succeeded")
	}
	s.Add(long, [][]byte{[]byte("k")}, []*version.Object{obj})
	if n := storedHints(t, st); n != 0 {
		t.Fatalf("%d hints stored for a 256-byte target", n)
	}
	if _, err := encodeKey(long, 0, []byte("k")); err == nil {
		t.Fatal("encodeKey of a 256-byte target succeeded")
	}
	if err := s.Keep(string(make([]byte, 255)), [][]byte{[]byte("k")}, []*version.Object{obj}); err != nil {
		t.Fatalf("Keep for a 255-byte target: %v", err)
	}
}

func mustKey(t testing.TB, target string, seq uint64, key []byte) []byte {
	t.Helper()
	b, err := encodeKey(target, seq, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// PendingFor counts a key's hints for every target, from Add and Keep, and
// forgets them once delivered; a reopened service counts what is stored.
func TestPendingForCountsAKeysHints(t *testing.T) {
	dir := t.TempDir()
	st, db := openStore(t, dir)
	s, err := Open(st, Options{Tick: make(chan time.Time)})
	if err != nil {
		t.Fatal(err)
	}
	k, other := []byte("k"), []byte("other")
	s.Add("n2", [][]byte{k, other}, []*version.Object{testObject(t, "a"), testObject(t, "b")})
	if err := s.Keep("n3", [][]byte{k}, []*version.Object{testObject(t, "c")}); err != nil {
		t.Fatal(err)
	}
	if got := s.PendingFor(k); got != 2 {
		t.Fatalf("PendingFor(k) = %d, want 2", got)
	}
	s.Close()
	db.Close()
	st, db = openStore(t, dir)
	t.Cleanup(func() { db.Close() })
	s, err = Open(st, Options{Tick: make(chan time.Time)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if got := s.PendingFor(k); got != 2 {
		t.Fatalf("after reopening, PendingFor(k) = %d, want 2", got)
	}
	s.Start(&fakeDeliverer{}, func(id string) bool { return id == "n2" })
	s.Pass(context.Background())
	if got, got2 := s.PendingFor(k), s.PendingFor(other); got != 1 || got2 != 0 {
		t.Fatalf("after delivering to n2, PendingFor = %d (k), %d (other), want 1, 0", got, got2)
	}
}
