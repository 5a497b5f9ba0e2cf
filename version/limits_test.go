package version

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestActorRoundTrip(t *testing.T) {
	for _, c := range []struct {
		node string
		inc  uint64
		want string
	}{
		{"n1", 0, "n1"},
		{"n1", 1, "n1~1"},
		{"n1", 35, "n1~z"},
		{"node-7", MaxIncarnation, "node-7~2gosa7pa2gv"},
	} {
		a := Actor(c.node, c.inc)
		if a != c.want {
			t.Errorf("Actor(%q, %d) = %q, want %q", c.node, c.inc, a, c.want)
		}
		n, inc, ok := SplitActor(a)
		if !ok || n != c.node || inc != c.inc {
			t.Errorf("SplitActor(%q) = %q %d %v", a, n, inc, ok)
		}
	}
	for _, bad := range []string{"", "~", "~1", "n~", "n~0", "n~01", "n~1~2", "n~A", "n~ 1", "n~2gosa7pa2gw", "n~zzzzzzzzzzzz",
		strings.Repeat("x", MaxActorSize+1)} {
		if _, _, ok := SplitActor(bad); ok {
			t.Errorf("SplitActor(%q) accepted", bad)
		}
	}
	if err := CheckNodeID("a~b"); err == nil {
		t.Error("CheckNodeID accepted a node ID with ~")
	}
	if err := CheckNodeID(strings.Repeat("x", MaxNodeIDSize)); err != nil {
		t.Error(err)
	}
	if _, _, ok := SplitActor(Actor(strings.Repeat("x", MaxNodeIDSize), MaxIncarnation)); !ok {
		t.Error("the longest node ID's actor is refused")
	}
}

// rawObject hand-encodes an object of one sibling by node whose context
// entry and dot counter are both counter.
func rawObject(node string, counter uint64) []byte {
	b := []byte{objectFormat, 1, byte(len(node))}
	b = append(b, node...)
	b = binary.AppendUvarint(b, counter)
	b = append(b, 1, 0) // one sibling, node index 0
	b = binary.AppendUvarint(b, counter)
	b = append(b, 0, 0, 1, 'x') // flags, timestamp 0, value "x"
	return b
}

// Issue 4: a counter of 2^64-1 in a peer's object made the next write of
// that actor panic (with the key locked). Such objects no longer decode,
// and no decoded object can make Write panic.
func TestDecodeObjectRefusesCounterAboveMax(t *testing.T) {
	if _, err := DecodeObject(rawObject("n1", MaxCounter)); err != nil {
		t.Fatalf("counter MaxCounter: %v", err)
	}
	for _, c := range []uint64{MaxCounter + 1, math.MaxUint64} {
		b := rawObject("n1", c)
		if _, err := DecodeObject(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("counter %d: DecodeObject error %v", c, err)
		}
		if _, _, _, err := DecodeWinner(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("counter %d: DecodeWinner error %v", c, err)
		}
	}
	if _, err := DecodeObject(rawObject("n1~x~y", 1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("malformed actor: %v", err)
	}
	// At MaxCounter the actor cannot write any more: an error, not a panic
	// and not an object that would not decode.
	o, _ := DecodeObject(rawObject("n1", MaxCounter))
	if _, err := o.WriteBlind("n1", []byte("v"), false, 1); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("WriteBlind at MaxCounter: %v", err)
	}
	if _, err := o.Write("n1", o.Context, []byte("v"), false, 1); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("Write at MaxCounter: %v", err)
	}
	if _, err := o.Write("n1~1", Clock{"n1~1": math.MaxUint64}, []byte("v"), false, 1); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("Write with a hand-built context at 2^64-1: %v", err)
	}
	// Another actor still can.
	if _, err := o.WriteBlind("n2", []byte("v"), false, 1); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeClockBounds(t *testing.T) {
	c := Clock{}
	for i := range MaxContextEntries {
		c[fmt.Sprintf("n%03d", i)] = 1
	}
	if _, err := ParseClock(ClockToString(c)); err != nil {
		t.Fatalf("%d entries: %v", len(c), err)
	}
	c["zzz"] = 1
	if _, err := ParseClock(ClockToString(c)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "MaxContextEntries") {
		t.Fatalf("%d entries: %v", len(c), err)
	}
	for _, bad := range []Clock{{"a~b~c": 1}, {"a": MaxCounter + 1}, {"a~0": 1}} {
		if _, err := DecodeClock(EncodeClock(bad)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeClock(%v): %v", bad, err)
		}
	}
}

// Issue 2 at the version level: a rebuilt node that stamped with its old
// actor would mint dots its peers had seen, and they would drop its writes.
// A new incarnation is a new actor, and its first write survives.
func TestRebuiltNodeWritesSurviveWithNewIncarnation(t *testing.T) {
	lose := func(before, after string) *Object {
		var a Object
		for i := range 5 {
			if _, err := a.WriteBlind(before, fmt.Appendf(nil, "v%d", i), false, int64(i)); err != nil {
				t.Fatal(err)
			}
		}
		peer := Merge(nil, &a) // replicated
		var rebuilt Object     // the same node, wiped
		if _, err := rebuilt.WriteBlind(after, []byte("v6"), false, 10); err != nil {
			t.Fatal(err)
		}
		return Merge(peer, &rebuilt)
	}
	if got := values(lose(Actor("n1", 7), Actor("n1", 8))); !slicesEqual(got, []string{"v4", "v6"}) {
		t.Fatalf("peer after the rebuilt node's write: %q, want [v4 v6]", got)
	}
	// The mechanism: with the actor reused, the new dot n1:1 is covered by
	// the peer's n1:5 and the write vanishes.
	if got := values(lose("n1", "n1")); !slicesEqual(got, []string{"v4"}) {
		t.Fatalf("with a reused actor: %q (the test no longer shows the loss)", got)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestAdmitContext(t *testing.T) {
	var o Object
	o.WriteBlind("a~1", []byte("x"), false, 1)
	o.WriteBlind("a~1", []byte("y"), false, 2)
	got, err := o.AdmitContext(Clock{"a~1": 1 << 40})
	if err != nil || got["a~1"] != 2 {
		t.Fatalf("clamp: %v %v", got, err)
	}
	if _, err := o.AdmitContext(Clock{"a~1": 1, "b~1": 1}); !errors.Is(err, ErrUnknownContext) {
		t.Fatalf("unknown actor: %v", err)
	}
	if _, err := (*Object)(nil).AdmitContext(Clock{"a": 1}); !errors.Is(err, ErrUnknownContext) {
		t.Fatalf("context for a key never written: %v", err)
	}
	if c, err := (*Object)(nil).AdmitContext(Clock{}); err != nil || len(c) != 0 {
		t.Fatalf("empty context: %v %v", c, err)
	}
	// A clamped context still supersedes what it saw, and no more.
	var b Object
	b.WriteBlind("b~1", []byte("z"), false, 3)
	m := Merge(&o, &b)
	ctx, _ := m.AdmitContext(Clock{"a~1": 99})
	m.Write("a~1", ctx, []byte("w"), false, 4)
	wantValues(t, m, "w", "z")
}

// Issue 5: a write that would make the object larger than MaxObjectSize is
// refused with ErrObjectTooLarge, and the object is unchanged; Merge of
// concurrent writes drops the oldest siblings to stay under the bound.
func TestObjectSizeBound(t *testing.T) {
	const value = 1 << 20
	var o Object
	n := 0
	for {
		prev := o.Clone()
		_, err := o.Write(fmt.Sprintf("n%d", n), nil, bytes.Repeat([]byte{'v'}, value), false, int64(n))
		if err != nil {
			if !errors.Is(err, ErrObjectTooLarge) || !strings.Contains(err.Error(), "siblings totalling") {
				t.Fatalf("write %d: %v", n, err)
			}
			if !o.Equal(prev) {
				t.Fatal("a refused write changed the object")
			}
			break
		}
		if size := len(o.Encode(nil)); size != o.EncodedSize() || size > MaxObjectSize {
			t.Fatalf("size %d, EncodedSize %d", size, o.EncodedSize())
		}
		n++
	}
	if n != MaxObjectSize/value-1 {
		t.Fatalf("%d siblings of %d bytes fit, want %d", n, value, MaxObjectSize/value-1)
	}
	// A blind write replaces them all.
	if _, err := o.WriteBlind("n0", []byte("small"), false, 100); err != nil {
		t.Fatal(err)
	}

	// Merge: 12 replicas each wrote a 1 MiB value concurrently. Merge
	// keeps every one of them (dropping one would lose a write another
	// replica acknowledged); CheckSize says the result is over the limit,
	// which is what a replica refuses to store.
	var states []*Object
	for i := range 12 {
		var s Object
		s.Write(fmt.Sprintf("r%02d", i), nil, bytes.Repeat([]byte{byte('a' + i)}, value), false, int64(i))
		states = append(states, &s)
	}
	fwd, back := states[0], states[len(states)-1]
	for i := 1; i < len(states); i++ {
		fwd = Merge(fwd, states[i])
		back = Merge(back, states[len(states)-1-i])
	}
	if !fwd.Equal(back) {
		t.Fatal("merge depends on order")
	}
	if err := fwd.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(fwd.Siblings) != 12 || len(fwd.Context) != 12 {
		t.Fatalf("merged: %d siblings, context %v; want all 12", len(fwd.Siblings), fwd.Context)
	}
	if err := fwd.CheckSize(); !errors.Is(err, ErrObjectTooLarge) {
		t.Fatalf("CheckSize of a %d-byte merge: %v", len(fwd.Encode(nil)), err)
	}
	if err := states[0].CheckSize(); err != nil {
		t.Fatalf("CheckSize of one 1 MiB sibling: %v", err)
	}
}
