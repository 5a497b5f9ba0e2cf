package version

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// values returns the live values of o, sorted, as strings (for readable asserts).
func values(o *Object) []string {
	var vs []string
	for _, s := range o.Live() {
		vs = append(vs, string(s.Value))
	}
	slices.Sort(vs)
	return vs
}

func wantValues(t *testing.T, o *Object, want ...string) {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatalf("invalid object %v: %v", o, err)
	}
	got := values(o)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("live values = %q, want %q (object %v)", got, want, o)
	}
}

// Concurrent writes produce siblings, and no merge order loses one.
func TestConcurrentWritesBecomeSiblingsInAnyMergeOrder(t *testing.T) {
	var a, b, c Object
	a.Write("a", nil, []byte("from-a"), false, 1)
	b.Write("b", nil, []byte("from-b"), false, 2)
	c.Write("c", nil, []byte("from-c"), false, 3)
	states := []*Object{&a, &b, &c}
	var want *Object
	for _, perm := range [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		m := Merge(Merge(states[perm[0]], states[perm[1]]), states[perm[2]])
		wantValues(t, m, "from-a", "from-b", "from-c")
		if want == nil {
			want = m
		} else if !m.Equal(want) {
			t.Fatalf("merge order %v gave %v, want %v", perm, m, want)
		}
	}
	if got := want.Context.String(); got != "{a:1, b:1, c:1}" {
		t.Fatalf("context = %s", got)
	}
}

// Two writes with the same context coordinated on different replicas are
// concurrent: both survive.
func TestSameContextOnDifferentReplicasIsConcurrent(t *testing.T) {
	var a Object
	a.Write("a", nil, []byte("v0"), false, 1)
	b := a.Clone() // replicated
	ctx := a.Context.Clone()
	a.Write("a", ctx, []byte("x"), false, 2)
	b.Write("b", ctx, []byte("y"), false, 2)
	wantValues(t, &a, "x")
	wantValues(t, b, "y")
	wantValues(t, Merge(&a, b), "x", "y")
}

// A write with the context of a read collapses exactly the siblings the read
// saw, and keeps one written concurrently after the read.
func TestWriteWithReadContextCollapsesOnlyWhatItSaw(t *testing.T) {
	var a, b Object
	a.Write("a", nil, []byte("x"), false, 1)
	b.Write("b", nil, []byte("y"), false, 1)
	m := Merge(&a, &b)
	wantValues(t, m, "x", "y")
	readCtx := m.Context.Clone() // a client reads both siblings

	// Meanwhile another client writes z on replica b, unaware of anything.
	b.Write("b", nil, []byte("z"), false, 2)

	// The first client resolves x and y into "xy" via replica a.
	a = *m
	a.Write("a", readCtx, []byte("xy"), false, 3)
	wantValues(t, &a, "xy")

	// After exchange, z (which the client never saw) is still there.
	r := Merge(&a, &b)
	wantValues(t, r, "xy", "z")
	if !r.Equal(Merge(&b, &a)) {
		t.Fatal("merge not commutative")
	}
}

// A blind write supersedes what the coordinating replica holds but stays
// concurrent with a write that replica had not seen.
func TestBlindWriteSupersedesLocalStateOnly(t *testing.T) {
	var a, b Object
	a.Write("a", nil, []byte("old1"), false, 1)
	a.Write("a", nil, []byte("old2"), false, 2) // empty context: siblings on a
	wantValues(t, &a, "old1", "old2")
	b.Write("b", nil, []byte("unseen"), false, 3)

	s, err := a.WriteBlind("a", []byte("set"), false, 4)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dot != (Dot{"a", 3}) {
		t.Fatalf("dot = %v, want a:3", s.Dot)
	}
	wantValues(t, &a, "set")
	wantValues(t, Merge(&a, &b), "set", "unseen")

	// Once the replica has seen b's write, a blind write replaces it too.
	m := Merge(&a, &b)
	m.WriteBlind("a", []byte("final"), false, 5)
	wantValues(t, m, "final")
	wantValues(t, Merge(m, &b), "final")
}

// Deletes are tombstones: they supersede what their context saw, are
// concurrent with what it did not, and a tombstone-only object reads as not
// found while still carrying history.
func TestDeleteTombstones(t *testing.T) {
	var a Object
	a.Write("a", nil, []byte("v"), false, 1)
	b := a.Clone()
	del, err := a.Write("a", a.Context.Clone(), []byte("ignored"), true, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !del.Deleted || len(del.Value) != 0 {
		t.Fatalf("tombstone = %+v", del)
	}
	if !a.IsDeleted() || a.Empty() || len(a.Live()) != 0 {
		t.Fatalf("after delete: IsDeleted=%v Empty=%v live=%v", a.IsDeleted(), a.Empty(), a.Live())
	}
	// The stale replica b still has v; merging does not resurrect it.
	if m := Merge(&a, b); !m.IsDeleted() || !m.Equal(&a) {
		t.Fatalf("stale replica resurrected the value: %v", m)
	}
	// A concurrent write (on b, which never saw the delete) survives it.
	b.Write("b", nil, []byte("concurrent"), false, 3)
	m := Merge(&a, b)
	wantValues(t, m, "concurrent")
	if m.IsDeleted() || len(m.Siblings) != 2 {
		t.Fatalf("want tombstone + live sibling, got %v", m)
	}
	// Writing after a delete works like after any write.
	m.WriteBlind("a", []byte("again"), false, 4)
	wantValues(t, m, "again")
	var empty Object
	if !empty.Empty() || !empty.IsDeleted() {
		t.Fatal("zero object should be empty and read as not found")
	}
	var nilObj *Object
	if !nilObj.Empty() || !nilObj.IsDeleted() || nilObj.Live() != nil {
		t.Fatal("nil object should be empty")
	}
}

// Re-applying (merging) an old state does not resurrect overwritten values.
func TestReplayOfOldStateDoesNotResurrect(t *testing.T) {
	var a Object
	a.Write("a", nil, []byte("v1"), false, 1)
	old := a.Clone()
	hint := a.Clone() // e.g. a hint stored on a fallback node
	b := a.Clone()
	b.Write("b", b.Context, []byte("v2"), false, 2)
	a = *Merge(&a, b)
	a.Write("a", a.Context.Clone(), []byte("v3"), false, 3)
	for _, stale := range []*Object{old, hint, b} {
		m := Merge(&a, stale)
		wantValues(t, m, "v3")
		if !m.Equal(&a) || !a.Descends(stale) {
			t.Fatalf("replaying %v changed state %v to %v", stale, &a, m)
		}
		if stale.Descends(&a) {
			t.Fatalf("stale %v should not descend %v", stale, &a)
		}
	}
}

// Descends catches a state that is missing an overwrite even when its
// context is not behind: p overwrote x, o did not learn of it.
func TestDescendsNeedsMoreThanContext(t *testing.T) {
	var o Object
	o.Write("a", nil, []byte("x"), false, 1)
	p := o.Clone()
	p.Write("a", p.Context.Clone(), []byte("y"), false, 2) // p: {a:2} [a:2]
	o.Write("b", nil, []byte("z"), false, 3)               // o: {a:1,b:1} [a:1 b:1]
	if o.Descends(p) || p.Descends(&o) {
		t.Fatal("concurrent states must not descend each other")
	}
	m := Merge(&o, p)
	wantValues(t, m, "y", "z")
	if !m.Descends(&o) || !m.Descends(p) {
		t.Fatal("merge must descend both inputs")
	}
}

// The sibling cap drops the oldest siblings by timestamp, never the new one,
// and the drop sticks (the context remembers the dot).
func TestSiblingCap(t *testing.T) {
	var a Object
	for i := range MaxSiblings + 5 {
		a.Write("a", nil, fmt.Appendf(nil, "v%d", i), false, int64(1000+i))
	}
	if len(a.Siblings) != MaxSiblings {
		t.Fatalf("siblings = %d, want %d", len(a.Siblings), MaxSiblings)
	}
	if a.Siblings[0].Dot.Counter != 6 {
		t.Fatalf("oldest kept = %v, want a:6", a.Siblings[0].Dot)
	}
	// A new write whose timestamp is the oldest (clock skew) is still kept.
	s, err := a.Write("a", nil, []byte("skewed"), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(a.Siblings, func(x Sibling) bool { return x.Dot == s.Dot }) {
		t.Fatal("cap dropped the write it was applying")
	}
	if len(a.Siblings) != MaxSiblings {
		t.Fatalf("siblings = %d", len(a.Siblings))
	}
	// Merge also caps: two replicas with MaxSiblings siblings each.
	var b Object
	for i := range MaxSiblings {
		b.Write("b", nil, fmt.Appendf(nil, "w%d", i), false, int64(5000+i))
	}
	m := Merge(&a, &b)
	if len(m.Siblings) != MaxSiblings {
		t.Fatalf("merged siblings = %d", len(m.Siblings))
	}
	for _, s := range m.Siblings {
		if s.Dot.Node != "b" {
			t.Fatalf("older sibling %v kept over newer ones", s.Dot)
		}
	}
	// Dropped values stay dropped when the full old state is replayed.
	if !Merge(m, &a).Equal(m) {
		t.Fatal("replaying a capped-away sibling resurrected it")
	}
}

func TestLWW(t *testing.T) {
	if _, ok := LWW(nil); ok {
		t.Fatal("LWW(nil) ok")
	}
	var a, b, c Object
	a.Write("a", nil, []byte("late"), false, 30)
	b.Write("b", nil, []byte("early"), false, 10)
	c.Write("c", nil, nil, true, 30) // tie with a on timestamp: larger dot wins
	m := Merge(Merge(&a, &b), &c)
	w, ok := LWW(m)
	if !ok || w.Dot != (Dot{"c", 1}) || !w.Deleted {
		t.Fatalf("LWW = %+v, %v", w, ok)
	}
	w, _ = LWW(Merge(&a, &b))
	if string(w.Value) != "late" {
		t.Fatalf("LWW = %q", w.Value)
	}
	// Making it durable collapses the siblings.
	m.WriteBlind("a", w.Value, w.Deleted, 40)
	wantValues(t, m, "late")
}

func TestWriteCopiesValueAndCounterUsesClientContext(t *testing.T) {
	var a Object
	buf := []byte("abc")
	a.Write("a", nil, buf, false, 1)
	buf[0] = 'X'
	wantValues(t, &a, "abc")
	// A client context ahead of the replica for its own node (the replica lost
	// data) must not yield a dot the context already covers.
	s, err := a.Write("a", Clock{"a": 7}, []byte("d"), false, 2)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dot.Counter != 8 || a.Context["a"] != 8 {
		t.Fatalf("dot %v context %v", s.Dot, a.Context)
	}
	for _, bad := range []string{"", "~", "n~", "n~0", "n~1~2", "n~A", "~1"} {
		if _, err := a.Write(bad, nil, nil, false, 0); !errors.Is(err, ErrBadActor) {
			t.Fatalf("Write by actor %q: %v, want ErrBadActor", bad, err)
		}
	}
}

func TestMergeNilAndSameDotTieBreak(t *testing.T) {
	var a Object
	a.Write("a", nil, []byte("v"), false, 1)
	if !Merge(nil, &a).Equal(&a) || !Merge(&a, nil).Equal(&a) || !Merge(nil, nil).Empty() {
		t.Fatal("nil merge")
	}
	// Same dot, different content (only after data loss): deterministic.
	b := a.Clone()
	b.Siblings[0].Value = []byte("w")
	if !Merge(&a, b).Equal(Merge(b, &a)) {
		t.Fatal("same-dot tie-break not commutative")
	}
}

func TestObjectEncodingRoundTripAndErrors(t *testing.T) {
	var a, b Object
	a.Write("node-a", nil, []byte("hello"), false, -5)
	b.Write("node-b", nil, nil, true, 1<<40)
	m := Merge(&a, &b)
	enc := m.Encode(nil)
	if enc[0] != objectFormat {
		t.Fatalf("format byte %d", enc[0])
	}
	d, err := DecodeObject(enc)
	if err != nil || !d.Equal(m) {
		t.Fatalf("round trip: %v %v vs %v", err, d, m)
	}
	if e, err := DecodeObject((*Object)(nil).Encode(nil)); err != nil || !e.Empty() {
		t.Fatalf("nil object: %v %v", e, err)
	}
	for name, bad := range map[string][]byte{
		"empty":     {},
		"truncated": enc[:len(enc)-1],
		"trailing":  append(slices.Clone(enc), 0),
		"zero ctr":  {1, 1, 1, 'a', 0, 0},
		"unsorted":  {1, 2, 1, 'b', 1, 1, 'a', 1, 0},
		"uncovered": {1, 1, 1, 'a', 1, 1, 0, 2, 0, 0, 0},
		"tombvalue": {1, 1, 1, 'a', 1, 1, 0, 1, 1, 0, 1, 'x'},
		"flags":     {1, 1, 1, 'a', 1, 1, 0, 1, 4, 0, 0},
		"overlong":  {1, 0x80, 0x00, 0},
		"hugecount": {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := DecodeObject(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := DecodeObject([]byte{9}); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("format 9: err = %v", err)
	}
}

func TestAllocsDecodeWinner(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -cover and -race")
	}
	var a, b Object
	a.Write("node-a", nil, []byte("older"), false, 1)
	b.Write("node-b", nil, []byte("newer"), false, 2)
	enc := Merge(&a, &b).Encode(nil)
	var value []byte
	allocs := testing.AllocsPerRun(100, func() {
		value, _, _, _ = DecodeWinner(enc)
	})
	if string(value) != "newer" {
		t.Fatalf("DecodeWinner = %q, want the newer sibling", value)
	}
	if allocs != 0 {
		t.Fatalf("DecodeWinner allocates %.0f times per call, want 0", allocs)
	}
}
