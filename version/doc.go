// Package version tracks causality for ringkv's values with dotted version
// vector sets (DVV sets, after Almeida et al., "Scalable and Accurate
// Causality Tracking for Eventually Consistent Stores"). It is pure code: no
// I/O, no clocks, no goroutines.
//
// # Model
//
// A replica stores, per key, an [Object]: a causal context (a version
// vector [Clock]: node → number of that node's write events seen) and a set
// of siblings. Each [Sibling] is tagged with the [Dot] (actor, counter) of
// the write that produced it. Each dot is minted by the coordinating
// replica; its actor names the replica and the incarnation of its data
// ([Actor]: a node that lost its data, or crashed, starts a new one, so it
// never reuses a counter its peers have seen). So the clock has one entry
// per replica incarnation that ever coordinated a write of the key: bounded
// by the replicas and their restarts, not by the number of clients. That
// is why ringkv forwards writes to a replica instead of coordinating them
// anywhere.
//
// A client reads the live siblings plus the context (as an opaque token,
// [ClockToString]) and sends the token back with its next write. The
// coordinating replica ([Object.Write]) drops exactly the siblings that
// context covers (the client saw them), keeps the rest (concurrent writes
// become siblings, never silently lost), adds the new sibling under a fresh
// dot and merges the client's context into its own. A write without a
// context (Redis SET, [Object.WriteBlind]) supersedes what the coordinating
// replica holds, but stays concurrent with writes that replica has not seen
// yet. Deletes are tombstone siblings that take part in causality like any
// write; an object whose siblings are all tombstones reads as not found
// ([Object.IsDeleted]).
//
// Replicas exchange whole objects and combine them with [Merge]: a sibling
// survives if the other side has it too or has not seen its dot; contexts
// take the pointwise max. Per dot, a state is "unseen" < "live" < "overwritten"
// and Merge takes the maximum, which is why it is commutative, associative
// (but see Retried writes below) and idempotent, and why replaying an old state never resurrects an
// overwritten value. [Object.Descends] tells whether one state already
// includes another (read repair skips such replicas).
//
// # Retried writes
//
// A client that does not learn a write's outcome may send it again. Each
// [Sibling] can carry the client's WriteID for its write, the same in every
// attempt. [Object.WriteOnce] does not stamp an attempt the object already
// holds (the same WriteID and the same value or tombstone), and [Merge]
// folds two siblings that are one write stored under two dots (attempts
// coordinated by two replicas) into the one with the smaller dot; the
// other's dot, which the context covers, counts as overwritten. Folding
// only turns live dots into overwritten ones, so replicas still converge.
//
// Last-write-wins is available only explicitly, through [LWW].
//
// # Bounds
//
// Siblings are bounded in normal operation because a write drops every
// sibling its context covers. For pathological clients that keep writing
// with stale or empty contexts, [MaxSiblings] (64) caps them: the oldest by
// timestamp are dropped and stay recorded in the context, so the drop acts as
// an overwrite everywhere. [MaxObjectSize] bounds an object's encoding so
// that every stored object fits a peer message: [Object.Write] refuses a
// write past it ([ErrObjectTooLarge]) and [Object.CheckSize] lets a replica
// refuse a merge past it ([Merge] itself never drops a sibling for size). Clock entries are bounded by the number of actors (replica
// incarnations) that ever coordinated a write of the key; a client context
// may name only those ([Object.AdmitContext]) and at most
// [MaxContextEntries] entries. Clock entries are never pruned: dropping an
// entry could make an overwritten value reappear, and the replica-only
// coordinator rule already keeps clocks small. The limits are listed
// together in limits.go.
//
// # Example
//
// Two clients write "x" concurrently through replicas a and b; once the
// replicas exchange state, both values are siblings. A client that read both
// and writes with that read's context replaces both:
//
//	var a, b version.Object
//	a.Write("a", nil, []byte("v1"), false, ts)   // context {a:1}, siblings [a:1]
//	b.Write("b", nil, []byte("v2"), false, ts)   // context {b:1}, siblings [b:1]
//	m := version.Merge(&a, &b)                   // context {a:1, b:1}, siblings [a:1 b:1]
//	ctx := m.Context                             // what a reader gets (as a token)
//	m.Write("a", ctx, []byte("v3"), false, ts)   // context {a:2, b:1}, siblings [a:2]
//
// # Encodings
//
// [Object.Encode] / [DecodeObject] give a compact, canonical, versioned
// binary form (first byte = format version); [EncodeClock] / [DecodeClock]
// do the same for clocks, and [ClockToString] / [ParseClock] wrap that in
// URL-safe base64 for the client-visible token. Decoders accept only
// canonical bytes of valid values (counters up to [MaxCounter], well-formed
// actors), report errors wrapping [ErrMalformed] or [ErrUnknownFormat], and
// never panic; nothing they accept can make a later Write or Merge panic.
package version
