package version

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// A retried write (the same WriteID and content) is applied once by the
// replica that already holds it, and a different value under the same ID
// is a new write.
func TestWriteOnceRecognizesARetry(t *testing.T) {
	var o Object
	first, applied, err := o.WriteOnce("a", nil, false, 7, []byte("v"), false, 100)
	if err != nil || !applied {
		t.Fatalf("first attempt: applied %v, err %v", applied, err)
	}
	before := o.Clone()
	again, applied, err := o.WriteOnce("a", nil, false, 7, []byte("v"), false, 200)
	if err != nil || applied {
		t.Fatalf("retry: applied %v, err %v; want it recognized", applied, err)
	}
	if again.Dot != first.Dot || !o.Equal(before) {
		t.Fatalf("retry changed the object: %v -> %v (returned %v)", before, &o, again.Dot)
	}
	if _, applied, _ := o.WriteOnce("a", nil, true, 7, []byte("v"), false, 200); applied {
		t.Fatal("a blind retry was applied again")
	}
	// The same ID with another value, or as a delete, is another write.
	if _, applied, _ := o.WriteOnce("a", o.Context.Clone(), false, 7, []byte("other"), false, 300); !applied {
		t.Fatal("a different value under the same ID was taken for a retry")
	}
	if _, applied, _ := o.WriteOnce("a", nil, false, 7, nil, true, 400); !applied {
		t.Fatal("a delete under the same ID was taken for a retry of a put")
	}
	// A write whose context covers the held sibling saw it: a new write,
	// even under the same ID and value (a client that reuses IDs resolving
	// siblings must not be taken for a retry).
	var two Object
	two.WriteOnce("a", nil, false, 1, []byte("v"), false, 1)
	other := Object{}
	other.Write("b", nil, []byte("z"), false, 2)
	both := Merge(&two, &other)
	if _, applied, _ := both.WriteOnce("a", both.Context.Clone(), false, 1, []byte("v"), false, 3); !applied || len(both.Siblings) != 1 {
		t.Fatalf("a resolving write that reuses an ID was not applied: %v", both)
	}
	// Without an ID nothing is recognized.
	n := len(o.Siblings)
	if _, applied, _ := o.WriteOnce("a", nil, false, 0, []byte("other"), false, 500); !applied || len(o.Siblings) != n+1 {
		t.Fatalf("an unnamed write was not applied: %v", &o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Two attempts of one write coordinated by two replicas fold into one
// sibling when the states meet, in either order, and stay folded.
func TestMergeFoldsTheAttemptsOfARetriedWrite(t *testing.T) {
	var base Object
	if _, err := base.Write("a", nil, []byte("old"), false, 1); err != nil {
		t.Fatal(err)
	}
	ctx := base.Context.Clone() // the client read "old"
	x, y := base.Clone(), base.Clone()
	if _, _, err := x.WriteOnce("a", ctx, false, 42, []byte("new"), false, 10); err != nil {
		t.Fatal(err)
	}
	if _, _, err := y.WriteOnce("b", ctx, false, 42, []byte("new"), false, 11); err != nil {
		t.Fatal(err)
	}
	xy, yx := Merge(x, y), Merge(y, x)
	if !xy.Equal(yx) {
		t.Fatalf("not commutative: %v vs %v", xy, yx)
	}
	if len(xy.Siblings) != 1 || string(xy.Siblings[0].Value) != "new" || xy.Siblings[0].Dot != (Dot{"a", 2}) {
		t.Fatalf("merge %v: want the one sibling a:2=\"new\"", xy)
	}
	if !xy.Context.Covers(Dot{"b", 1}) {
		t.Fatalf("the folded attempt's dot is not covered: %v", xy)
	}
	// The folded attempt does not come back from the replica that had it.
	if m := Merge(xy, y); !m.Equal(xy) {
		t.Fatalf("the folded attempt came back: %v", m)
	}
	if !xy.Descends(y) || !xy.Descends(x) {
		t.Fatalf("%v does not descend its inputs", xy)
	}
	// Without IDs, the same two writes stay siblings: two clients may
	// write the same value concurrently.
	x2, y2 := base.Clone(), base.Clone()
	x2.Write("a", ctx, []byte("new"), false, 10)
	y2.Write("b", ctx, []byte("new"), false, 11)
	if m := Merge(x2, y2); len(m.Siblings) != 2 {
		t.Fatalf("unnamed writes of one value were folded: %v", m)
	}
	// Nor are two writes with one ID and different values folded.
	x3, y3 := base.Clone(), base.Clone()
	x3.WriteOnce("a", ctx, false, 42, []byte("one"), false, 10)
	y3.WriteOnce("b", ctx, false, 42, []byte("two"), false, 11)
	if m := Merge(x3, y3); len(m.Siblings) != 2 {
		t.Fatalf("different values under one ID were folded: %v", m)
	}
}

func TestWriteIDEncoding(t *testing.T) {
	var o Object
	o.WriteOnce("a", nil, false, 0x0102030405060708, []byte("v"), false, 5)
	o.WriteOnce("b", nil, false, 0x0102030405060708, nil, true, 6) // a delete: another write
	enc := o.Encode(nil)
	if len(enc) != o.EncodedSize() {
		t.Fatalf("EncodedSize %d, encoding %d bytes", o.EncodedSize(), len(enc))
	}
	d, err := DecodeObject(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Equal(&o) || d.Siblings[0].WriteID != 0x0102030405060708 {
		t.Fatalf("round trip: %v != %v", d, &o)
	}
	// An unnamed object encodes as before: no ID bytes.
	var plain Object
	plain.Write("a", nil, []byte("v"), false, 5)
	named := plain.Clone()
	named.Siblings[0].WriteID = 1
	if got, want := len(named.Encode(nil)), len(plain.Encode(nil))+writeIDSize; got != want {
		t.Fatalf("a named sibling encodes to %d bytes, want %d", got, want)
	}

	// Refused: the ID flag with an ID of 0, and two siblings that are one
	// write.
	zero := named.Encode(nil)
	at := bytes.Index(zero, []byte{flagWriteID, 0, 0, 0, 0, 0, 0, 0, 1})
	if at < 0 {
		t.Fatalf("no named sibling in %x", zero)
	}
	zero[at+8] = 0
	if _, err := DecodeObject(zero); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an ID of 0 decoded: %v", err)
	}
	twice := &Object{Context: Clock{"a": 2}, Siblings: []Sibling{
		{Dot: Dot{"a", 1}, Value: []byte("v"), WriteID: 9},
		{Dot: Dot{"a", 2}, Value: []byte("v"), WriteID: 9},
	}}
	if err := twice.Validate(); err == nil {
		t.Fatal("Validate accepted one write twice")
	}
	for name, decode := range map[string]func([]byte) error{
		"DecodeObject":  func(b []byte) error { _, err := DecodeObject(b); return err },
		"DecodeContext": func(b []byte) error { _, err := DecodeContext(b); return err },
		"DecodeWinner":  func(b []byte) error { _, _, _, err := DecodeWinner(b); return err },
	} {
		if err := decode(twice.Encode(nil)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s accepted one write twice: %v", name, err)
		}
	}
	// At most MaxSiblings siblings carry a write ID (every object Write and
	// Merge build has at most MaxSiblings siblings): more is refused, which
	// bounds the decoder's check on hostile input.
	many := &Object{Context: Clock{"a": MaxSiblings + 1}}
	for i := range MaxSiblings + 1 {
		many.Siblings = append(many.Siblings, Sibling{Dot: Dot{"a", uint64(i + 1)}, Value: fmt.Appendf(nil, "v%d", i), WriteID: 3})
	}
	if err := many.Validate(); err == nil {
		t.Fatal("Validate accepted more than MaxSiblings named siblings")
	}
	if _, err := DecodeObject(many.Encode(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("more than MaxSiblings named siblings decoded: %v", err)
	}
	many.Siblings = many.Siblings[1:]
	if _, err := DecodeObject(many.Encode(nil)); err != nil {
		t.Fatalf("MaxSiblings named siblings: %v", err)
	}
	// Different values under one ID are two writes, and decode.
	twice.Siblings[1].Value = []byte("w")
	if _, err := DecodeObject(twice.Encode(nil)); err != nil {
		t.Fatal(err)
	}
}

// retryRec is a client write with an ID, and the contexts under which its
// attempts were coordinated.
type retryRec struct {
	id      uint64
	value   []byte
	deleted bool
	ctx     Clock // nil: blind
	dots    []Dot // one per attempt that was applied
}

// Histories in which clients retry their writes at other replicas (with
// the same ID, value and context), and replicas merge in any order, keep
// two promises: a write that nothing overwrote is live exactly once after
// the states meet (not lost, not doubled), and nothing overwritten comes
// back.
func TestPropRetriedWritesAreStoredOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 4).Draw(t, "replicas")
		nodes := make([]string, n)
		states := make([]*Object, n)
		for i := range n {
			nodes[i], states[i] = fmt.Sprintf("n%d", i), &Object{}
		}
		var writes []*retryRec
		var contexts []Clock // what clients read
		var snapshots []*Object
		var log []string
		ts := int64(1000)
		overwritten := map[Dot]bool{} // dots some attempt superseded
		attempt := func(i int, w *retryRec) {
			ctx := w.ctx
			if ctx != nil {
				// As a replica does: the context is admitted against the
				// state (a context naming writes it lacks is refused).
				var err error
				if ctx, err = states[i].AdmitContext(w.ctx); err != nil {
					return // refused: the client reads again
				}
			}
			before := states[i].Clone()
			s, applied, err := states[i].WriteOnce(nodes[i], ctx, w.ctx == nil, w.id, w.value, w.deleted, ts)
			if err != nil {
				t.Fatal(err)
			}
			if applied {
				w.dots = append(w.dots, s.Dot)
				for _, old := range before.Siblings {
					if !slices.ContainsFunc(states[i].Siblings, func(x Sibling) bool { return x.Dot == old.Dot }) {
						overwritten[old.Dot] = true
					}
				}
			}
			log = append(log, fmt.Sprintf("attempt of %d at %d (applied %v) -> %v", w.id, i, applied, states[i]))
		}
		for step := range rapid.IntRange(1, 30).Draw(t, "steps") {
			i := rapid.IntRange(0, n-1).Draw(t, "replica")
			ts += int64(rapid.IntRange(-3, 10).Draw(t, "tick"))
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0: // a new write, blind or with a context a client read
				w := &retryRec{id: uint64(step + 1), deleted: rapid.IntRange(0, 4).Draw(t, "del") == 0}
				if !w.deleted {
					w.value = fmt.Appendf(nil, "w%d", rapid.IntRange(0, 3).Draw(t, "value")) // values repeat
				}
				if len(contexts) > 0 && rapid.Bool().Draw(t, "withContext") {
					w.ctx = contexts[rapid.IntRange(0, len(contexts)-1).Draw(t, "context")]
				}
				writes = append(writes, w)
				attempt(i, w)
			case 1: // a retry of an earlier write
				if len(writes) > 0 {
					attempt(i, writes[rapid.IntRange(0, len(writes)-1).Draw(t, "retried")])
				}
			case 2: // replication or anti-entropy, sometimes an old state
				from := states[rapid.IntRange(0, n-1).Draw(t, "from")]
				if len(snapshots) > 0 && rapid.Bool().Draw(t, "late") {
					from = snapshots[rapid.IntRange(0, len(snapshots)-1).Draw(t, "snapshot")]
				}
				states[i] = Merge(states[i], from)
				log = append(log, fmt.Sprintf("merge into %d -> %v", i, states[i]))
			case 3: // a client reads
				contexts = append(contexts, states[i].Context.Clone())
			}
			if err := states[i].Validate(); err != nil {
				t.Fatalf("%v\n%v", err, log)
			}
			snapshots = append(snapshots, states[i].Clone())
		}
		order := rapid.Permutation(snapshots).Draw(t, "order")
		var final *Object
		for _, s := range order {
			final = Merge(final, s)
			if m := Merge(s, final); !m.Equal(final) {
				t.Fatalf("not commutative: %v vs %v", m, final)
			}
		}
		for _, sib := range final.Siblings {
			if overwritten[sib.Dot] {
				t.Fatalf("overwritten %v came back: %v\n%v", sib.Dot, final, log)
			}
		}
		for _, w := range writes {
			if len(w.dots) == 0 {
				continue
			}
			live := 0
			for _, s := range final.Siblings {
				if s.WriteID == w.id && s.Deleted == w.deleted && bytes.Equal(s.Value, w.value) {
					live++
				}
			}
			if !slices.ContainsFunc(w.dots, func(d Dot) bool { return overwritten[d] }) && live != 1 {
				t.Fatalf("write %d (attempts %v, never overwritten) is live %d times in %v\n%v", w.id, w.dots, live, final, log)
			}
		}
	})
}
