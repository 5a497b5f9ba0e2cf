package version

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// Objects for the Merge properties come from simulated histories, not from
// arbitrary generators: an arbitrary object pair can break DVV invariants
// that real histories keep (e.g. the same dot with different values, or a
// context that claims to have seen a dot while holding an older one).

type writeRec struct {
	sib Sibling
	ctx Clock // effective context: what the write superseded
}

type history struct {
	nodes     []string
	states    []*Object  // current state per replica
	snapshots []*Object  // every state any replica ever had, in order
	owner     []int      // owner[k] = replica of snapshots[k]
	contexts  []Clock    // contexts clients obtained by reading
	writes    []writeRec // every write ever coordinated
	log       []string   // for failure messages
}

const maxHistorySteps = 40 // < MaxSiblings, so the cap never interferes

func genHistory(t *rapid.T) *history {
	n := rapid.IntRange(2, 5).Draw(t, "replicas")
	h := &history{}
	for i := range n {
		h.nodes = append(h.nodes, fmt.Sprintf("n%d", i))
		h.states = append(h.states, &Object{})
	}
	steps := rapid.IntRange(1, maxHistorySteps).Draw(t, "steps")
	ts := int64(1000)
	for step := range steps {
		i := rapid.IntRange(0, n-1).Draw(t, "replica")
		st := h.states[i]
		ts += int64(rapid.IntRange(-3, 10).Draw(t, "tick")) // coordinators' clocks are skewed
		switch op := rapid.IntRange(0, 4).Draw(t, "op"); op {
		case 0, 1: // write with a context some client read (or none)
			var ctx Clock
			if len(h.contexts) > 0 && rapid.Bool().Draw(t, "withContext") {
				ctx = h.contexts[rapid.IntRange(0, len(h.contexts)-1).Draw(t, "context")]
			}
			del := rapid.IntRange(0, 4).Draw(t, "del") == 0
			val := fmt.Appendf(nil, "w%d", step)
			s, err := st.Write(h.nodes[i], ctx, val, del, ts)
			if err != nil {
				t.Fatal(err)
			}
			h.writes = append(h.writes, writeRec{s, ctx.Clone()})
			h.log = append(h.log, fmt.Sprintf("write %v ctx=%v -> %v", s.Dot, ctx, st))
		case 2: // context-free write (Redis SET)
			ctx := st.Context.Clone()
			s, err := st.WriteBlind(h.nodes[i], fmt.Appendf(nil, "w%d", step), false, ts)
			if err != nil {
				t.Fatal(err)
			}
			h.writes = append(h.writes, writeRec{s, ctx})
			h.log = append(h.log, fmt.Sprintf("blind %v -> %v", s.Dot, st))
		case 3: // replication / anti-entropy; sometimes a late (old) message
			var from *Object
			if len(h.snapshots) > 0 && rapid.Bool().Draw(t, "late") {
				from = h.snapshots[rapid.IntRange(0, len(h.snapshots)-1).Draw(t, "snapshot")]
			} else {
				from = h.states[rapid.IntRange(0, n-1).Draw(t, "from")]
			}
			h.states[i] = Merge(st, from)
			h.log = append(h.log, fmt.Sprintf("merge %d <- %v -> %v", i, from, h.states[i]))
		case 4: // a client reads from this replica and maybe one more (R=2)
			ctx := st.Context.Clone()
			if rapid.Bool().Draw(t, "quorumRead") {
				ctx = ctx.Merge(h.states[rapid.IntRange(0, n-1).Draw(t, "other")].Context)
			}
			h.contexts = append(h.contexts, ctx)
		}
		h.snapshots = append(h.snapshots, h.states[i].Clone())
		h.owner = append(h.owner, i)
	}
	return h
}

func (h *history) draw(t *rapid.T, label string) *Object {
	return h.snapshots[rapid.IntRange(0, len(h.snapshots)-1).Draw(t, label)]
}

func requireEqual(t *rapid.T, what string, a, b *Object) {
	t.Helper()
	if !a.Equal(b) {
		t.Fatalf("%s: %v != %v", what, a, b)
	}
	if !bytes.Equal(a.Encode(nil), b.Encode(nil)) {
		t.Fatalf("%s: equal objects with different encodings: %v", what, a)
	}
}

func TestPropMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t)
		a, b, c := h.draw(t, "a"), h.draw(t, "b"), h.draw(t, "c")
		ab := Merge(a, b)
		requireEqual(t, "commutative", ab, Merge(b, a))
		requireEqual(t, "associative", Merge(ab, c), Merge(a, Merge(b, c)))
		requireEqual(t, "idempotent", Merge(a, a), a)
		requireEqual(t, "absorbing", Merge(ab, a), ab)
		requireEqual(t, "nil identity", Merge(a, nil), a)
		if !ab.Descends(a) || !ab.Descends(b) {
			t.Fatalf("merge %v does not descend inputs %v, %v", ab, a, b)
		}
		if err := ab.Validate(); err != nil {
			t.Fatal(err)
		}
		// Descends means exactly "merging adds nothing".
		if a.Descends(b) != Merge(a, b).Equal(a) {
			t.Fatalf("Descends(%v, %v) = %v disagrees with Merge", a, b, a.Descends(b))
		}
		// Merge does not modify its inputs.
		a2 := a.Clone()
		Merge(a, c)
		requireEqual(t, "input untouched", a, a2)
	})
}

// No write is lost and nothing overwritten comes back: after every state ever
// held is merged, in any order, the live siblings are exactly the writes that
// no later write's context covered.
func TestPropNoLostWritesNoResurrection(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t)
		order := rapid.Permutation(h.snapshots).Draw(t, "order")
		var final *Object
		for _, s := range order {
			final = Merge(final, s)
		}
		var want []Sibling
		for _, w := range h.writes {
			superseded := false
			for _, x := range h.writes {
				if x.ctx.Covers(w.sib.Dot) {
					superseded = true
					break
				}
			}
			if !superseded {
				want = append(want, w.sib)
			}
		}
		got := final.Siblings
		if len(got) != len(want) {
			t.Fatalf("final %v, want siblings %v\nhistory:\n%v", final, want, h.log)
		}
		for _, w := range want {
			found := false
			for _, g := range got {
				if g.Equal(w) {
					found = true
				}
			}
			if !found {
				t.Fatalf("write %v lost: final %v\nhistory:\n%v", w.Dot, final, h.log)
			}
		}
		// Merging current replica states gives the same as merging all history:
		// old states add nothing to what replicas hold now.
		var cur *Object
		for _, s := range h.states {
			cur = Merge(cur, s)
		}
		requireEqual(t, "current vs all history", cur, final)
		// Each replica's state only moves forward.
		for k, s := range h.snapshots {
			if !h.states[h.owner[k]].Descends(s) {
				t.Fatalf("replica %d went backwards: %v does not descend %v", h.owner[k], h.states[h.owner[k]], s)
			}
		}
	})
}

func TestPropObjectEncoding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t)
		o := h.draw(t, "o")
		enc := o.Encode([]byte("prefix"))[len("prefix"):]
		d, err := DecodeObject(enc)
		if err != nil {
			t.Fatalf("decode %v: %v", o, err)
		}
		requireEqual(t, "round trip", d, o)
		if !bytes.Equal(d.Encode(nil), enc) {
			t.Fatal("re-encoding differs")
		}
		requireWinner(t, enc, o)
		// Any strict prefix is rejected, never a panic.
		cut := rapid.IntRange(0, len(enc)-1).Draw(t, "cut")
		if _, err := DecodeObject(enc[:cut]); err == nil {
			t.Fatalf("prefix of %d/%d bytes accepted", cut, len(enc))
		}
		if _, _, _, err := DecodeWinner(enc[:cut]); err == nil {
			t.Fatalf("DecodeWinner accepted a prefix of %d/%d bytes", cut, len(enc))
		}
	})
}

// requireWinner checks that DecodeWinner picks from enc what LWW picks
// from o, the object enc encodes, and that DecodeWinnerLive counts o's
// live siblings.
func requireWinner(t interface{ Fatalf(string, ...any) }, enc []byte, o *Object) {
	value, deleted, ok, live, err := DecodeWinnerLive(enc)
	if err != nil {
		t.Fatalf("DecodeWinnerLive of %v: %v", o, err)
	}
	win, wok := LWW(o)
	if ok != wok || deleted != win.Deleted || !bytes.Equal(value, win.Value) {
		t.Fatalf("DecodeWinnerLive of %v = %q, deleted %v, ok %v; LWW picks %v", o, value, deleted, ok, win)
	}
	if want := len(o.Live()); live != want {
		t.Fatalf("DecodeWinnerLive of %v counts %d live siblings, want %d", o, live, want)
	}
}

var genClock = rapid.Custom(func(t *rapid.T) Clock {
	// Few nodes and small counters so that ordered pairs are common.
	return rapid.MapOfN(rapid.SampledFrom([]string{"a", "b", "c", "d"}), rapid.Uint64Range(0, 3), 0, 4).Draw(t, "clock")
})

func TestPropClockPartialOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genClock.Draw(t, "a"), genClock.Draw(t, "b"), genClock.Draw(t, "c")
		if !a.Descends(a) || a.Compare(a) != Equal {
			t.Fatal("not reflexive")
		}
		if a.Descends(b) && b.Descends(a) && !a.Equal(b) {
			t.Fatalf("not antisymmetric: %v %v", a, b)
		}
		if a.Descends(b) && b.Descends(c) && !a.Descends(c) {
			t.Fatalf("not transitive: %v %v %v", a, b, c)
		}
		inverse := map[Order]Order{Equal: Equal, Before: After, After: Before, Concurrent: Concurrent}
		if a.Compare(b) != inverse[b.Compare(a)] {
			t.Fatalf("Compare not antisymmetric: %v %v", a, b)
		}
		m := a.Merge(b)
		if !m.Descends(a) || !m.Descends(b) || !m.Equal(b.Merge(a)) {
			t.Fatalf("merge %v not an upper bound of %v %v", m, a, b)
		}
		if c.Descends(a) && c.Descends(b) && !c.Descends(m) {
			t.Fatalf("merge %v not least: %v", m, c)
		}
		if !a.Merge(b).Merge(c).Equal(a.Merge(b.Merge(c))) || !a.Merge(a).Equal(a) {
			t.Fatal("clock merge laws")
		}
		for n, v := range a {
			if v > 0 && !m.Covers(Dot{n, v}) {
				t.Fatal("covers")
			}
		}
	})
}

func TestPropClockEncoding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := rapid.MapOfN(rapid.StringMatching(`[^~]{1,8}(~[1-9a-z][0-9a-z]{0,9})?`), rapid.Uint64Range(0, MaxCounter), 0, 6).Draw(t, "clock")
		enc := EncodeClock(Clock(c))
		d, err := DecodeClock(enc)
		if err != nil || !d.Equal(c) || !bytes.Equal(EncodeClock(d), enc) {
			t.Fatalf("round trip %v: %v %v", c, d, err)
		}
		p, err := ParseClock(ClockToString(c))
		if err != nil || !p.Equal(c) {
			t.Fatalf("token round trip %v: %v %v", c, p, err)
		}
	})
}

// WriteBlind is a write whose context is everything the object holds: it
// must equal Write with a copy of the object's own context.
func TestPropWriteBlindIsWriteWithOwnContext(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := genHistory(t)
		o := h.draw(t, "o")
		node := rapid.SampledFrom(h.nodes).Draw(t, "node")
		deleted := rapid.Bool().Draw(t, "deleted")
		ts := rapid.Int64Range(-5, 50).Draw(t, "ts")
		blind, full := o.Clone(), o.Clone()
		if o == nil {
			blind, full = &Object{}, &Object{}
		}
		sb, err := blind.WriteBlind(node, []byte("v"), deleted, ts)
		if err != nil {
			t.Fatal(err)
		}
		sf, err := full.Write(node, full.Context.Clone(), []byte("v"), deleted, ts)
		if err != nil {
			t.Fatal(err)
		}
		if sb.Dot != sf.Dot {
			t.Fatalf("new dot %v, Write gives %v", sb.Dot, sf.Dot)
		}
		requireEqual(t, "WriteBlind vs Write with own context", blind, full)
		if err := blind.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}
