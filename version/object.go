package version

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math/bits"
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
// MaxObjectSize is not a cap of this kind: Write refuses a write whose
// object would exceed it (ErrObjectTooLarge), so a client learns that the
// key needs resolving, and Merge never drops a sibling for size (dropping
// would silently lose a write another replica acknowledged). A replica
// refuses to store a merge over the limit instead (package replica), so the
// write that would make it so is not acknowledged there.
//
// Only while a cap is exceeded does the choice of dropped siblings depend
// on merge order (Merge stays commutative and idempotent and replicas still
// converge, but associativity can fail); below the caps all laws hold
// exactly.
const MaxSiblings = 64

// Sibling is one value of a key together with the write event that made it.
type Sibling struct {
	Dot       Dot
	Value     []byte // nil/empty for a tombstone
	Deleted   bool   // tombstone: a delete that takes part in causality like a write
	Timestamp int64  // unix nanoseconds on the coordinator; used only by LWW and the cap
	// WriteID is the client's name for the write (0: none), the same in
	// every attempt of a retried write: see WriteOnce and Merge.
	WriteID uint64
}

// sameWrite reports whether s and t store the same client write under two
// dots (a retried write whose attempts were both stored): the same non-zero
// WriteID and the same content. Content is compared too, so that a client
// that reuses an ID for another value loses nothing: that is a new write.
func (s Sibling) sameWrite(t Sibling) bool {
	return s.WriteID != 0 && s.WriteID == t.WriteID && s.Deleted == t.Deleted && bytes.Equal(s.Value, t.Value)
}

// Clone returns a copy that shares no memory with s.
func (s Sibling) Clone() Sibling {
	s.Value = bytes.Clone(s.Value)
	return s
}

// Equal reports whether s and t are the same sibling (nil and empty values
// are equal).
func (s Sibling) Equal(t Sibling) bool {
	return s.Dot == t.Dot && s.Deleted == t.Deleted && s.Timestamp == t.Timestamp && s.WriteID == t.WriteID && bytes.Equal(s.Value, t.Value)
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
	if c := cmp.Compare(s.WriteID, t.WriteID); c != 0 {
		return c
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
// Invariants (checked by Validate and DecodeObject, kept by every function
// here): every sibling's dot is covered by Context, siblings are sorted by
// dot with no duplicates, counters are in 1..MaxCounter, actors are well
// formed (see Actor), tombstones carry no value, no two siblings are the
// same client write (the same non-zero WriteID and content: Merge keeps
// one), and at most MaxSiblings siblings carry a WriteID.
//
// The zero value (and a nil *Object, for the read-only functions) is the
// empty object: nothing known about the key.
type Object struct {
	Context  Clock
	Siblings []Sibling
}

// Write applies a write coordinated by actor (the coordinating replica's
// actor, see Actor; only replicas of the key coordinate) with the causal
// context ctx the client read (nil or empty for a client that read
// nothing). It:
//
//   - drops every sibling whose dot ctx covers: the client saw it, so this
//     write replaces it;
//   - keeps every other sibling: the client did not see it, so it is
//     concurrent with this write;
//   - mints the dot (actor, n+1), n being the larger of actor's entry in the
//     object context and in ctx (taking the max guarantees no context that
//     predates the write covers its dot), and adds the new sibling;
//   - sets the context to the merge of both contexts plus the new dot.
//
// A replica passes a client's ctx through AdmitContext first, so that ctx
// names only writes the key had. If deleted is true the sibling is a
// tombstone and value is ignored. value is copied. It returns the new
// sibling.
//
// Write returns an error, and leaves o unchanged, when actor is not well
// formed (ErrBadActor), when actor's counter has reached MaxCounter
// (ErrCounterExhausted), or when the new object would encode to more than
// MaxObjectSize bytes (ErrObjectTooLarge: too many siblings too large,
// which the client resolves by writing with a context that covers them).
// Past MaxSiblings it drops the oldest siblings instead, never the new one.
func (o *Object) Write(actor string, ctx Clock, value []byte, deleted bool, ts int64) (Sibling, error) {
	return o.write(actor, ctx, value, deleted, ts, 0)
}

// WriteOnce is Write for a write the client named id (not 0), which it
// may send again when it does not learn the first attempt's outcome: if o
// already holds that write (a sibling with the same WriteID and the same
// content: value and tombstone flag, whose dot ctx does not cover: a
// retry's context predates its first attempt, so a client that saw the
// sibling and writes over it is making a new write, whatever its ID), the
// write is not applied again: WriteOnce returns that sibling with applied
// false and leaves o unchanged. Otherwise it is Write, tagging the new
// sibling with id. blind chooses WriteBlind's rules instead of Write's
// (ctx is then ignored).
//
// An attempt stored under another dot on another replica is recognized
// when the two meet (Merge keeps one of them). Only an attempt that was
// overwritten before they met cannot be recognized: then the retry stays,
// as a sibling of what overwrote the first attempt.
func (o *Object) WriteOnce(actor string, ctx Clock, blind bool, id uint64, value []byte, deleted bool, ts int64) (s Sibling, applied bool, err error) {
	if held, ok := o.Holds(id, value, deleted); ok && (blind || !ctx.Covers(held.Dot)) {
		return held, false, nil
	}
	if blind {
		s, err = o.writeBlind(actor, value, deleted, ts, id)
	} else {
		s, err = o.write(actor, ctx, value, deleted, ts, id)
	}
	return s, err == nil, err
}

// Holds returns the sibling of o that is the client write id (not 0) with
// this content (value, ignored for a tombstone, and tombstone flag), if
// o holds one: an earlier attempt of that write.
func (o *Object) Holds(id uint64, value []byte, deleted bool) (Sibling, bool) {
	if id == 0 || o == nil {
		return Sibling{}, false
	}
	want := Sibling{WriteID: id, Deleted: deleted}
	if !deleted {
		want.Value = value
	}
	for _, held := range o.Siblings {
		if held.sameWrite(want) {
			return held, true
		}
	}
	return Sibling{}, false
}

func (o *Object) write(actor string, ctx Clock, value []byte, deleted bool, ts int64, id uint64) (Sibling, error) {
	s, err := stamp(actor, max(o.Context[actor], ctx[actor]), value, deleted, ts, id)
	if err != nil {
		return Sibling{}, err
	}
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
	newCtx := o.Context.Merge(ctx)
	newCtx[actor] = s.Dot.Counter
	kept = capSiblings(kept, &s.Dot)
	if err := checkSize(newCtx, kept); err != nil {
		return Sibling{}, err
	}
	o.Context, o.Siblings = newCtx, kept
	return s, nil
}

// WriteBlind applies a write that carries no context (e.g. Redis SET): it
// supersedes everything the coordinating replica currently holds, as if the
// client had read o just now. A write this replica has not seen yet stays
// concurrent and becomes a sibling when the states merge. It fails, leaving
// o unchanged, as Write does.
func (o *Object) WriteBlind(actor string, value []byte, deleted bool, ts int64) (Sibling, error) {
	return o.writeBlind(actor, value, deleted, ts, 0)
}

func (o *Object) writeBlind(actor string, value []byte, deleted bool, ts int64, id uint64) (Sibling, error) {
	// This is o.Write(actor, o.Context.Clone(), ...), done directly: a
	// context equal to o's covers every sibling (each one's dot is in o's
	// context), and merging o's context with itself changes nothing. So the
	// result is o's context plus the new dot, and the new sibling alone: one
	// new map instead of three, and no filtering.
	s, err := stamp(actor, o.Context[actor], value, deleted, ts, id)
	if err != nil {
		return Sibling{}, err
	}
	ctx := make(Clock, len(o.Context)+1)
	for n, v := range o.Context {
		if v > 0 {
			ctx[n] = v
		}
	}
	ctx[actor] = s.Dot.Counter
	sibs := []Sibling{s} // a new slice: callers may hold the old one
	if err := checkSize(ctx, sibs); err != nil {
		return Sibling{}, err
	}
	o.Context, o.Siblings = ctx, sibs
	return s, nil
}

// AdmitContext checks a client's causal context against o, the state of the
// key the coordinating replica holds, and returns the context to write
// with (a new clock; ctx is not modified):
//
//   - a context that names an actor o's context lacks is refused with an
//     error wrapping ErrUnknownContext: it claims writes this key never had
//     (a forged or corrupted token, or a token for another key), and
//     letting it into the key's context would make the key's clock grow
//     with names no replica ever wrote under;
//   - an entry ahead of o's is clamped to o's: a client cannot claim to
//     have seen writes that do not exist. A forged counter would otherwise
//     make this replica skip counters, or cover (hide) the future writes of
//     another actor when the states merge.
//
// An honest client's context names only writes some replica had when the
// client read, so it is refused only when o lacks them; the caller makes
// that rare by merging into o what a read quorum holds before coordinating,
// and the client's remedy is to read the key again.
func (o *Object) AdmitContext(ctx Clock) (Clock, error) {
	var have Clock
	if o != nil {
		have = o.Context
	}
	out := make(Clock, len(ctx))
	for a, v := range ctx {
		if v == 0 {
			continue
		}
		h := have[a]
		if h == 0 {
			return nil, fmt.Errorf("%w (this key has no write by %q)", ErrUnknownContext, a)
		}
		out[a] = min(v, h)
	}
	return out, nil
}

// stamp is a write's new sibling: actor's next event after base, named id
// by the client (0: unnamed). value is copied. It fails on a malformed
// actor or a counter at MaxCounter (past it, the object would no longer
// decode).
func stamp(actor string, base uint64, value []byte, deleted bool, ts int64, id uint64) (Sibling, error) {
	if !validActor(actor) {
		return Sibling{}, fmt.Errorf("%w: %q", ErrBadActor, actor)
	}
	if base >= MaxCounter {
		return Sibling{}, fmt.Errorf("%w: actor %q has made %d writes of this key", ErrCounterExhausted, actor, base)
	}
	s := Sibling{Dot: Dot{Node: actor, Counter: base + 1}, Deleted: deleted, Timestamp: ts, WriteID: id}
	if !deleted {
		s.Value = bytes.Clone(value)
	}
	return s, nil
}

// Merge combines two replicas' states of the same key (replication, read
// repair, anti-entropy, hinted handoff). A sibling survives iff the other
// side also has it or the other side's context does not cover its dot (a
// covered dot the other side lacks was overwritten there); the context is
// the pointwise max. Two surviving siblings that are one client write
// stored twice (attempts of a retried write coordinated by two replicas:
// the same WriteID and content) become one: the one with the smaller dot
// stays, and the other's dot, covered by the context, counts as
// overwritten. Past MaxSiblings siblings the oldest siblings are
// dropped (see MaxSiblings); size is not capped here (see CheckSize). Merge is commutative,
// associative and idempotent (see MaxSiblings, and below, for the
// exceptions), and its result descends both inputs.
//
// Folding a retried write's attempts into one is, like the cap, a step
// that only ever turns a live dot into an overwritten one; replicas that
// exchange their states still converge. But whether it happens depends on
// whether both attempts were ever live together: if one attempt was
// overwritten on one replica before it met the other, the other stays (a
// sibling of the overwriting write) where the two orders differ.
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
	r.Siblings = capSiblings(foldRetries(out), nil)
	return r
}

// foldRetries drops from a dot-sorted slice every sibling that is the same
// write (sameWrite) as one with a smaller dot, in place; the result stays
// sorted.
func foldRetries(ss []Sibling) []Sibling {
	named := 0
	for _, s := range ss {
		if s.WriteID != 0 {
			named++
		}
	}
	if named < 2 {
		return ss
	}
	out := ss[:0]
	for _, s := range ss {
		dup := false
		for _, kept := range out {
			if kept.sameWrite(s) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

// CheckSize returns an error wrapping ErrObjectTooLarge when o would encode
// to more than MaxObjectSize bytes, saying how many siblings and bytes it
// holds and what the client can do.
func (o *Object) CheckSize() error {
	if o == nil {
		return nil
	}
	return checkSize(o.Context, o.Siblings)
}

// capSiblings enforces MaxSiblings on a dot-sorted slice, dropping the
// oldest siblings but never *keep. It returns ss itself when nothing is
// dropped.
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

// checkSize returns an ErrObjectTooLarge error when the object (ctx, ss)
// would encode to more than MaxObjectSize bytes.
func checkSize(ctx Clock, ss []Sibling) error {
	if sizeBound(ctx, ss) <= MaxObjectSize {
		return nil
	}
	size := encodedSize(ctx, ss)
	if size <= MaxObjectSize {
		return nil
	}
	var values int
	for _, s := range ss {
		values += len(s.Value)
	}
	return fmt.Errorf("%w: the key would have %d siblings totalling %d bytes (%d bytes of values), over the limit of %d bytes; "+
		"resolve the siblings (read the key and write with its context) or write smaller values",
		ErrObjectTooLarge, len(ss), size, values, MaxObjectSize)
}

// sizeBound is an upper bound of the encoded size of the object (ctx, ss),
// computed without allocating.
func sizeBound(ctx Clock, ss []Sibling) int {
	n := 1 + 2*binary.MaxVarintLen64
	for a := range ctx {
		n += len(a) + 2*binary.MaxVarintLen64
	}
	for _, s := range ss {
		n += 1 + len(s.Value) + 4*binary.MaxVarintLen64 + writeIDSize
	}
	return n
}

// encodedSizes returns the exact encoded size of the object (ctx, ss), ss
// being valid for ctx, in parts: fixed is everything but the siblings and
// their count, sizes[i] is sibling i's encoding.
func encodedSizes(ctx Clock, ss []Sibling) (fixed int, sizes []int) {
	nodes := ctx.Nodes()
	fixed = 1 + uvarintLen(uint64(len(nodes)))
	for _, n := range nodes {
		fixed += uvarintLen(uint64(len(n))) + len(n) + uvarintLen(ctx[n])
	}
	sizes = make([]int, len(ss))
	for i, s := range ss {
		idx, _ := slices.BinarySearch(nodes, s.Dot.Node)
		sizes[i] = uvarintLen(uint64(idx)) + uvarintLen(s.Dot.Counter) + 1 +
			uvarintLen(zigzag(s.Timestamp)) + uvarintLen(uint64(len(s.Value))) + len(s.Value)
		if s.WriteID != 0 {
			sizes[i] += writeIDSize
		}
	}
	return fixed, sizes
}

// encodedSize is the exact length of the encoding of the object (ctx, ss).
func encodedSize(ctx Clock, ss []Sibling) int {
	fixed, sizes := encodedSizes(ctx, ss)
	n := fixed + uvarintLen(uint64(len(ss)))
	for _, x := range sizes {
		n += x
	}
	return n
}

// EncodedSize returns len(o.Encode(nil)) without encoding o (which must be
// valid).
func (o *Object) EncodedSize() int {
	if o == nil {
		return 3
	}
	return encodedSize(o.Context, o.Siblings)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

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
		if !validActor(n) {
			return fmt.Errorf("version: context has a malformed actor %q", n)
		}
		if v == 0 {
			return fmt.Errorf("version: context has a zero entry for %q", n)
		}
		if v > MaxCounter {
			return fmt.Errorf("version: context entry %d for %q exceeds MaxCounter", v, n)
		}
	}
	named := 0
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
		if s.WriteID != 0 {
			if named++; named > MaxSiblings {
				return fmt.Errorf("version: more than %d siblings with write IDs", MaxSiblings)
			}
			for _, t := range o.Siblings[:i] {
				if t.sameWrite(s) {
					return fmt.Errorf("version: siblings %v and %v are the same write %016x (Merge keeps one)", t.Dot, s.Dot, s.WriteID)
				}
			}
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
