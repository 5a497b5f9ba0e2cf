package version

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
)

// MaxSiblings bounds the siblings of one object. Siblings are normally few,
// because a write drops every sibling its context covers; the cap is a safety
// valve for pathological clients that keep writing with stale or empty
// contexts. When Write or Merge leaves more than MaxSiblings, the oldest
// (smallest Timestamp, ties broken by smaller dot) are dropped, except that
// Write never drops the sibling it just created. A dropped sibling's dot
// stays in the context, so the drop behaves exactly like an overwrite: it
// propagates through Merge and the value does not come back.
//
// Only while the cap is exceeded does the choice of dropped siblings depend
// on merge order (Merge stays commutative and idempotent and replicas still
// converge, but associativity can fail); below the cap all laws hold exactly.
const MaxSiblings = 64

// Sibling is one value of a key together with the write event that made it.
type Sibling struct {
	Dot       Dot
	Value     []byte // nil/empty for a tombstone
	Deleted   bool   // tombstone: a delete that takes part in causality like a write
	Timestamp int64  // unix nanoseconds on the coordinator; used only by LWW and the cap
}

// Clone returns a copy that shares no memory with s.
func (s Sibling) Clone() Sibling {
	s.Value = bytes.Clone(s.Value)
	return s
}

// Equal reports whether s and t are the same sibling (nil and empty values
// are equal).
func (s Sibling) Equal(t Sibling) bool {
	return s.Dot == t.Dot && s.Deleted == t.Deleted && s.Timestamp == t.Timestamp && bytes.Equal(s.Value, t.Value)
}

// compareContent orders two siblings with the same dot. A dot names one write
// so they should be identical; this is a deterministic tie-break that keeps
// Merge commutative even if a node lost its data and reused a counter.
func compareContent(s, t Sibling) int {
	if c := cmp.Compare(s.Timestamp, t.Timestamp); c != 0 {
		return c
	}
	if s.Deleted != t.Deleted {
		if s.Deleted {
			return 1
		}
		return -1
	}
	return bytes.Compare(s.Value, t.Value)
}

// olderThan is the order the cap and LWW use: by timestamp, ties by dot.
func olderThan(s, t Sibling) bool {
	if s.Timestamp != t.Timestamp {
		return s.Timestamp < t.Timestamp
	}
	return s.Dot.Compare(t.Dot) < 0
}

// Object is everything a replica stores for one key: the causal context (all
// write events it has seen, directly or through merges) and the siblings
// (the writes among those that nothing it has seen superseded).
//
// Invariants (checked by Validate, kept by every function here): every
// sibling's dot is covered by Context, siblings are sorted by dot with no
// duplicates, counters are non-zero and tombstones carry no value.
//
// The zero value (and a nil *Object, for the read-only functions) is the
// empty object: nothing known about the key.
type Object struct {
	Context  Clock
	Siblings []Sibling
}

// Write applies a write coordinated by node (which must be a replica of the
// key) with the causal context ctx the client read (nil or empty for a
// client that read nothing). It:
//
//   - drops every sibling whose dot ctx covers: the client saw it, so this
//     write replaces it;
//   - keeps every other sibling: the client did not see it, so it is
//     concurrent with this write;
//   - mints the dot (node, n+1), n being the larger of node's entry in the
//     object context and in ctx (ctx can be ahead if this replica lost data;
//     taking the max guarantees no context that predates the write covers
//     its dot), and adds the new sibling;
//   - sets the context to the merge of both contexts plus the new dot.
//
// If deleted is true the sibling is a tombstone and value is ignored. value
// is copied. It returns the new sibling. Write panics if node is empty.
func (o *Object) Write(node string, ctx Clock, value []byte, deleted bool, ts int64) Sibling {
	s := stamp(node, max(o.Context[node], ctx[node]), value, deleted, ts)
	// Build a new slice rather than filtering in place: callers may still
	// hold the old Siblings slice (e.g. a response being encoded).
	kept := make([]Sibling, 0, len(o.Siblings)+1)
	for _, old := range o.Siblings {
		if !ctx.Covers(old.Dot) {
			kept = append(kept, old)
		}
	}
	i, _ := slices.BinarySearchFunc(kept, s.Dot, func(x Sibling, d Dot) int { return x.Dot.Compare(d) })
	kept = slices.Insert(kept, i, s)
	o.Context = o.Context.Merge(ctx)
	o.Context[node] = s.Dot.Counter
	o.Siblings = capSiblings(kept, &s.Dot)
	return s
}

// WriteBlind applies a write that carries no context (e.g. Redis SET): it
// supersedes everything the coordinating replica currently holds, as if the
// client had read o just now. A write this replica has not seen yet stays
// concurrent and becomes a sibling when the states merge.
func (o *Object) WriteBlind(node string, value []byte, deleted bool, ts int64) Sibling {
	// This is o.Write(node, o.Context.Clone(), ...), done directly: a context
	// equal to o's covers every sibling (each one's dot is in o's context),
	// and merging o's context with itself changes nothing. So the result is
	// o's context plus the new dot, and the new sibling alone: one new map
	// instead of three, and no filtering.
	s := stamp(node, o.Context[node], value, deleted, ts)
	ctx := make(Clock, len(o.Context)+1)
	for n, v := range o.Context {
		if v > 0 {
			ctx[n] = v
		}
	}
	ctx[node] = s.Dot.Counter
	o.Context = ctx
	o.Siblings = []Sibling{s} // a new slice: callers may hold the old one
	return s
}

// stamp is a write's new sibling: node's next event after base. value is
// copied. It panics on an empty node or a counter that would overflow.
func stamp(node string, base uint64, value []byte, deleted bool, ts int64) Sibling {
	if node == "" {
		panic("version: Write with an empty node id")
	}
	if base == math.MaxUint64 {
		// Unreachable through ParseClock (bounded by MaxCounter); only a
		// hand-built clock gets here.
		panic(fmt.Sprintf("version: counter overflow for node %q", node))
	}
	s := Sibling{Dot: Dot{Node: node, Counter: base + 1}, Deleted: deleted, Timestamp: ts}
	if !deleted {
		s.Value = bytes.Clone(value)
	}
	return s
}

// Merge combines two replicas' states of the same key (replication, read
// repair, anti-entropy, hinted handoff). A sibling survives iff the other
// side also has it or the other side's context does not cover its dot (a
// covered dot the other side lacks was overwritten there); the context is
// the pointwise max. Merge is commutative, associative and idempotent (see
// MaxSiblings for the one exception), and its result descends both inputs.
// Either input may be nil; neither is modified. The result may share Value
// slices with the inputs: values are never mutated in place by this package.
func Merge(a, b *Object) *Object {
	if a == nil {
		a = &Object{}
	}
	if b == nil {
		b = &Object{}
	}
	r := &Object{Context: a.Context.Merge(b.Context)}
	as, bs := a.Siblings, b.Siblings
	out := make([]Sibling, 0, max(len(as), len(bs)))
	for len(as) > 0 || len(bs) > 0 {
		var c int
		switch {
		case len(as) == 0:
			c = 1
		case len(bs) == 0:
			c = -1
		default:
			c = as[0].Dot.Compare(bs[0].Dot)
		}
		switch {
		case c < 0: // only in a
			if !b.Context.Covers(as[0].Dot) {
				out = append(out, as[0])
			}
			as = as[1:]
		case c > 0: // only in b
			if !a.Context.Covers(bs[0].Dot) {
				out = append(out, bs[0])
			}
			bs = bs[1:]
		default: // both have it
			s := as[0]
			if compareContent(bs[0], s) > 0 {
				s = bs[0]
			}
			out = append(out, s)
			as, bs = as[1:], bs[1:]
		}
	}
	if len(out) == 0 {
		out = nil
	}
	r.Siblings = capSiblings(out, nil)
	return r
}

// capSiblings enforces MaxSiblings on a dot-sorted slice, dropping the oldest
// siblings but never *keep.
func capSiblings(ss []Sibling, keep *Dot) []Sibling {
	excess := len(ss) - MaxSiblings
	if excess <= 0 {
		return ss
	}
	byAge := make([]int, len(ss))
	for i := range byAge {
		byAge[i] = i
	}
	slices.SortFunc(byAge, func(i, j int) int {
		if olderThan(ss[i], ss[j]) {
			return -1
		}
		if olderThan(ss[j], ss[i]) {
			return 1
		}
		return 0
	})
	drop := make([]bool, len(ss))
	for _, i := range byAge {
		if excess == 0 {
			break
		}
		if keep != nil && ss[i].Dot == *keep {
			continue
		}
		drop[i] = true
		excess--
	}
	out := make([]Sibling, 0, MaxSiblings)
	for i, s := range ss {
		if !drop[i] {
			out = append(out, s)
		}
	}
	return out
}

// Live returns the siblings that are not tombstones, in dot order. A read
// returns these values (several of them = siblings the client resolves).
func (o *Object) Live() []Sibling {
	if o == nil {
		return nil
	}
	var live []Sibling
	for _, s := range o.Siblings {
		if !s.Deleted {
			live = append(live, s)
		}
	}
	return live
}

// IsDeleted reports whether the object reads as not found: it has no live
// sibling (every sibling is a tombstone, or there is none). It is true for
// the empty object too; use Empty to tell "never written" apart.
func (o *Object) IsDeleted() bool {
	if o == nil {
		return true
	}
	for _, s := range o.Siblings {
		if !s.Deleted {
			return false
		}
	}
	return true
}

// Empty reports whether the object carries no information at all: no
// siblings and an empty context. A deleted key is not empty (its tombstone
// and context must be kept until every replica has them, or a stale replica
// would resurrect the value).
func (o *Object) Empty() bool {
	return o == nil || (len(o.Siblings) == 0 && len(o.Context.Nodes()) == 0)
}

// Clone returns a deep copy (values included).
func (o *Object) Clone() *Object {
	if o == nil {
		return nil
	}
	c := &Object{Context: o.Context.Clone()}
	if len(o.Siblings) > 0 {
		c.Siblings = make([]Sibling, len(o.Siblings))
		for i, s := range o.Siblings {
			c.Siblings[i] = s.Clone()
		}
	}
	return c
}

// Equal reports whether o and p are the same state (nil equals empty).
func (o *Object) Equal(p *Object) bool {
	if o == nil {
		o = &Object{}
	}
	if p == nil {
		p = &Object{}
	}
	return o.Context.Equal(p.Context) && slices.EqualFunc(o.Siblings, p.Siblings, Sibling.Equal)
}

// Descends reports whether o has seen everything p has, so that p adds
// nothing: Merge(o, p) equals o. Precisely: o's context descends p's, and
// every sibling of o whose dot p's context covers is also a sibling of p (if
// p covers it but lacks it, p saw it overwritten and o did not). Siblings of
// p need no check: o's context covers them, so they are either in o or
// already overwritten in o.
//
// Read repair sends the merged state to each replica whose state the merged
// one descends but is not Equal to; a replica whose state descends the
// merged one needs nothing.
func (o *Object) Descends(p *Object) bool {
	if p == nil {
		return true
	}
	var oc Clock
	if o != nil {
		oc = o.Context
	}
	if !oc.Descends(p.Context) {
		return false
	}
	if o == nil {
		return true
	}
	for _, s := range o.Siblings {
		if !p.Context.Covers(s.Dot) {
			continue
		}
		if _, found := slices.BinarySearchFunc(p.Siblings, s.Dot, func(x Sibling, d Dot) int { return x.Dot.Compare(d) }); !found {
			return false
		}
	}
	return true
}

// LWW resolves the siblings by last-write-wins: the one with the largest
// Timestamp, ties broken by the larger dot. It is an explicit opt-in, never
// the default, because it silently discards concurrent writes. The winner
// may be a tombstone (the key then reads as not found). ok is false when the
// object has no siblings. To make the resolution durable, write the winner
// back with WriteBlind.
func LWW(o *Object) (winner Sibling, ok bool) {
	if o == nil || len(o.Siblings) == 0 {
		return Sibling{}, false
	}
	winner = o.Siblings[0]
	for _, s := range o.Siblings[1:] {
		if olderThan(winner, s) {
			winner = s
		}
	}
	return winner, true
}

// LiveValue is what a single-value read (Redis GET) answers for o: the
// value of the sibling LWW picks, or false when o has no siblings or that
// sibling is a tombstone. DecodeWinner gives the same answer from o's
// encoding without decoding it.
func LiveValue(o *Object) ([]byte, bool) {
	win, ok := LWW(o)
	if !ok || win.Deleted {
		return nil, false
	}
	return win.Value, true
}

// Validate checks the invariants listed on Object. Objects built by Write,
// Merge and DecodeObject always pass; it exists for objects built by hand
// and for tests.
func (o *Object) Validate() error {
	if o == nil {
		return nil
	}
	for n, v := range o.Context {
		if n == "" {
			return fmt.Errorf("version: context has an empty node id")
		}
		if v == 0 {
			return fmt.Errorf("version: context has a zero entry for %q", n)
		}
	}
	for i, s := range o.Siblings {
		if s.Dot.Node == "" || s.Dot.Counter == 0 {
			return fmt.Errorf("version: sibling %d has invalid dot %v", i, s.Dot)
		}
		if !o.Context.Covers(s.Dot) {
			return fmt.Errorf("version: sibling dot %v not covered by context %v", s.Dot, o.Context)
		}
		if s.Deleted && len(s.Value) > 0 {
			return fmt.Errorf("version: tombstone %v has a value", s.Dot)
		}
		if i > 0 && o.Siblings[i-1].Dot.Compare(s.Dot) >= 0 {
			return fmt.Errorf("version: siblings not strictly sorted at %v", s.Dot)
		}
	}
	return nil
}

// String renders the object for logs and test failures, e.g.
// "{a:2, b:1} [a:2=\"x\" b:1=<deleted>]".
func (o *Object) String() string {
	if o == nil {
		return "<nil>"
	}
	var b bytes.Buffer
	b.WriteString(o.Context.String())
	b.WriteString(" [")
	for i, s := range o.Siblings {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.Dot.String())
		if s.Deleted {
			b.WriteString("=<deleted>")
		} else {
			fmt.Fprintf(&b, "=%q", s.Value)
		}
	}
	b.WriteByte(']')
	return b.String()
}
