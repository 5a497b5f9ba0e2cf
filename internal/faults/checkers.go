package faults

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ringkv/ringkv/version"
)

// Violation is one broken guarantee, with the ops that show it.
type Violation struct {
	Checker string
	Key     string
	Msg     string
	Ops     []*Op
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] key %s: %s", v.Checker, v.Key, v.Msg)
	for _, o := range v.Ops {
		fmt.Fprintf(&b, "\n      %s", o)
	}
	return b.String()
}

func byKey(ops []*Op) map[string][]*Op {
	m := map[string][]*Op{}
	for _, o := range ops {
		m[o.Key] = append(m[o.Key], o)
	}
	return m
}

// EncodeSet is the set workload's value: the sorted elements joined by
// commas.
func EncodeSet(elems map[string]bool) string {
	s := make([]string, 0, len(elems))
	for e := range elems {
		s = append(s, e)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// DecodeSets returns the union of the sets in values (siblings).
func DecodeSets(values []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			if e != "" {
				m[e] = true
			}
		}
	}
	return m
}

// duplicates reports a read that returned one write's value as two
// siblings: values are unique per write, so that write was applied twice
// (coordinated twice, e.g. a forwarded write retried on another replica).
func duplicates(checker, key string, r *Op, values []string) []Violation {
	var out []Violation
	var ops []*Op
	if r != nil {
		ops = []*Op{r}
	}
	for i := 1; i < len(values); i++ {
		if values[i] == values[i-1] && (i == 1 || values[i] != values[i-2]) {
			out = append(out, Violation{Checker: checker, Key: key,
				Msg: fmt.Sprintf("value %q is two siblings: its write was applied twice", Abbrev(values[i])), Ops: ops})
		}
	}
	return out
}

// CheckSetAdds is checker (a), no acknowledged write lost, for the set
// workload: final maps each key to its read at R=ALL after the faults
// stopped and the cluster healed. Every element whose add was acknowledged
// must be in the union of that read's siblings, and every element there
// must come from an add that was at least attempted (none invented). No
// read, the final one or one an add made before writing, may return one
// write's value as two siblings (each add writes a set no other add
// writes: it holds the add's own element).
func CheckSetAdds(ops []*Op, final map[string]ReadResult) []Violation {
	var out []Violation
	for key, kops := range byKey(ops) {
		res, ok := final[key]
		if !ok {
			out = append(out, Violation{Checker: "set-adds", Key: key, Msg: "no final read"})
			continue
		}
		out = append(out, duplicates("set-adds", key, nil, res.Values)...)
		have := DecodeSets(res.Values)
		attempted := map[string]bool{}
		var lost []*Op
		for _, o := range kops {
			if o.Kind != Add {
				continue
			}
			out = append(out, duplicates("set-adds", key, o, o.Saw)...)
			if o.MayHaveApplied() {
				attempted[o.Value] = true
			}
			if o.Acked() && !have[o.Value] {
				lost = append(lost, o)
			}
		}
		if len(lost) > 0 {
			out = append(out, Violation{Checker: "set-adds", Key: key,
				Msg: fmt.Sprintf("%d acknowledged adds missing from the final read (%d elements present)", len(lost), len(have)),
				Ops: lost})
		}
		for e := range have {
			if !attempted[e] {
				out = append(out, Violation{Checker: "set-adds", Key: key, Msg: fmt.Sprintf("element %q was never added (or its add provably failed)", e)})
			}
		}
	}
	return out
}

// CheckRegisterReads is checker (b), R+W>N reads, for the register
// workload of blind writes, deletes and reads. n is N. For a read r that
// succeeded, let Y be the acknowledged blind writes y of its key that
// completed before r was invoked with r.Quorum + y.Quorum > n. Then:
//
//   - r must not return, as any sibling, the value of an acknowledged write x
//     that completed before some y in Y was invoked (with x.Quorum + y.Quorum
//     > n, so that y's write saw x): y supersedes x;
//   - r must not answer not-found (no version at all) when Y, or any
//     acknowledged write with a context completing before r began (with
//     r.Quorum + its quorum > n), is not empty;
//   - r may answer deleted (tombstones only) only if some delete that may
//     have been applied, invoked before r completed, is not superseded in
//     the same way (deletes are writes of a tombstone);
//   - every value r returns was written by a put that may have applied.
//
// Only writes acknowledged before r began constrain it; writes concurrent
// with each other may legitimately both survive as siblings. A write with a
// context (Op.Context) supersedes only what its context saw, so it is never
// a y here, only an x (CheckContextWrites checks what it replaced). The checker
// assumes no node lost acknowledged data (no restarts on a wiped directory
// in the schedule).
func CheckRegisterReads(ops []*Op, n int) []Violation {
	var out []Violation
	for key, kops := range byKey(ops) {
		writer := map[string]*Op{}
		var writes, reads []*Op
		for _, o := range kops {
			switch o.Kind {
			case Put:
				writer[o.Value] = o
				writes = append(writes, o)
			case Delete:
				writes = append(writes, o)
			case Read:
				if o.Acked() {
					reads = append(reads, o)
				}
			}
		}
		for _, r := range reads {
			out = append(out, duplicates("rw-quorum", key, r, r.Read.Values)...)
			var ys []*Op
			var last *Op // the last acknowledged write before r, of any kind
			for _, y := range writes {
				if y.Acked() && y.Complete < r.Invoke && r.Quorum+y.Quorum > n {
					last = y
					if !y.Context {
						ys = append(ys, y)
					}
				}
			}
			// supersededBy returns a y in Y that must have overwritten x.
			supersededBy := func(x *Op) *Op {
				if !x.Acked() {
					return nil
				}
				for _, y := range ys {
					if x != y && x.Complete < y.Invoke && x.Quorum+y.Quorum > n {
						return y
					}
				}
				return nil
			}
			for _, v := range r.Read.Values {
				x := writer[v]
				if x == nil || !x.MayHaveApplied() {
					out = append(out, Violation{Checker: "rw-quorum", Key: key, Msg: fmt.Sprintf("read returned %q, which no write that may have applied wrote", Abbrev(v)), Ops: []*Op{r}})
					continue
				}
				if y := supersededBy(x); y != nil {
					out = append(out, Violation{Checker: "rw-quorum", Key: key,
						Msg: fmt.Sprintf("stale read: returned %q, overwritten by #%d (acknowledged before the read began)", v, y.ID),
						Ops: []*Op{x, y, r}})
				}
			}
			if last == nil {
				continue
			}
			if !r.Read.Exists {
				out = append(out, Violation{Checker: "rw-quorum", Key: key,
					Msg: "read found nothing although writes were acknowledged before it began", Ops: []*Op{last, r}})
				continue
			}
			if len(r.Read.Values) == 0 {
				ok := false
				for _, d := range writes {
					if d.Kind == Delete && d.MayHaveApplied() && d.Invoke < r.Complete && supersededBy(d) == nil {
						ok = true
						break
					}
				}
				if !ok && len(ys) > 0 {
					out = append(out, Violation{Checker: "rw-quorum", Key: key,
						Msg: "read answered deleted, but every delete was overwritten by a put acknowledged before the read began", Ops: []*Op{ys[len(ys)-1], r}})
				}
			}
		}
	}
	return out
}

// CheckContextWrites is checker (e), context writes replace what they saw,
// for the context-register workload (blind writes and deletes, writes and
// deletes with the context of a read, PutBatch calls, reads). n is N. Let y
// be an acknowledged write, and r a successful read of y's key that began
// after y completed, with r.Quorum + y.Quorum > n. Then r must not return,
// as any sibling:
//
//   - if y carries a context (violations "ctx-replace") (a put or a delete): a value in y.Saw. y's
//     context covers the dots of every sibling its read returned, and once
//     y is stored on W replicas, any merge with y's state (a read at R,
//     read repair) drops those siblings. Values written concurrently with
//     y, which its read did not return, may survive beside it and are not
//     checked; a write of unknown outcome that lands later adds its own
//     value but cannot bring back one whose dot y's context covers.
//   - if y is a blind write in a PutBatch ("batch-replace"): the value of an earlier write
//     of the same key in the same batch (y.Saw) that was acknowledged. The
//     batch applies as Puts in order, so the later write supersedes the
//     earlier one. An earlier write of unknown outcome may have been applied
//     after y (a forwarded write that timed out) and is not checked.
//
// The blind-write rules are CheckRegisterReads'. Like it, this assumes no
// node lost acknowledged data (no wiped directories in the schedule).
func CheckContextWrites(ops []*Op, n int) []Violation {
	var out []Violation
	for key, kops := range byKey(ops) {
		writer := map[string]*Op{}
		var ys, reads []*Op
		for _, o := range kops {
			switch o.Kind {
			case Put, Delete:
				if o.Kind == Put {
					writer[o.Value] = o
				}
				if o.Acked() && len(o.Saw) > 0 && (o.Context || o.Batch != 0) {
					ys = append(ys, o)
				}
			case Read:
				if o.Acked() && len(o.Read.Values) > 0 {
					reads = append(reads, o)
				}
			}
		}
		// One violation per (replaced value, replacing write): the first
		// read that returns it.
		reported := map[[2]string]bool{}
		for _, r := range reads {
			for _, y := range ys {
				if y.Complete >= r.Invoke || r.Quorum+y.Quorum <= n {
					continue
				}
				for _, v := range r.Read.Values {
					if !slices.Contains(y.Saw, v) {
						continue
					}
					x := writer[v]
					if y.Batch != 0 && !y.Context && (x == nil || !x.Acked()) {
						continue
					}
					id := [2]string{v, fmt.Sprint(y.ID)}
					if reported[id] {
						continue
					}
					reported[id] = true
					checker, what := "ctx-replace", "whose context saw it"
					if !y.Context {
						checker, what = "batch-replace", fmt.Sprintf("later in the same PutBatch (batch#%d)", y.Batch)
					}
					ops := []*Op{}
					if x != nil {
						ops = append(ops, x)
					}
					out = append(out, Violation{Checker: checker, Key: key,
						Msg: fmt.Sprintf("read returned %q, replaced by %s #%d %s, acknowledged before the read began",
							Abbrev(v), y.Kind, y.ID, what),
						Ops: append(ops, y, r)})
				}
			}
		}
	}
	return out
}

// CheckSiblings is checker (c), concurrent writes kept as siblings, for
// the sibling workload of writes that carry the context of a read (Op.Saw:
// the values that read returned), some of them issued in pairs with the
// same context at the same time. An acknowledged write x may disappear only
// when a write that saw it (x's value in its Saw) may have been applied.
// It checks the final read (R=ALL after healing) and every successful read
// r with r.Quorum + x.Quorum > n that began after x was acknowledged: x must
// be among r's siblings unless a write that saw x was invoked before r
// completed.
func CheckSiblings(ops []*Op, final map[string]ReadResult, n int) []Violation {
	var out []Violation
	for key, kops := range byKey(ops) {
		// seenBy[v]: the writes that saw v and may have applied.
		seenBy := map[string][]*Op{}
		var writes []*Op
		for _, o := range kops {
			if o.Kind != Put {
				continue
			}
			writes = append(writes, o)
			if o.MayHaveApplied() {
				for _, v := range o.Saw {
					seenBy[v] = append(seenBy[v], o)
				}
			}
		}
		superseded := func(x *Op, before func(w *Op) bool) bool {
			for _, w := range seenBy[x.Value] {
				if before(w) {
					return true
				}
			}
			return false
		}
		for _, r := range kops {
			if r.Kind == Read && r.Acked() {
				out = append(out, duplicates("siblings", key, r, r.Read.Values)...)
			}
		}
		// One violation per lost write: the first read that lacks it.
		for _, x := range writes {
			if !x.Acked() {
				continue
			}
			for _, r := range kops {
				if r.Kind != Read || !r.Acked() || x.Complete >= r.Invoke || r.Quorum+x.Quorum <= n || slices.Contains(r.Read.Values, x.Value) {
					continue
				}
				if superseded(x, func(w *Op) bool { return w.Invoke < r.Complete }) {
					continue
				}
				out = append(out, Violation{Checker: "siblings", Key: key,
					Msg: fmt.Sprintf("read lacks %q, acknowledged before it began and overwritten by no write that saw it", x.Value),
					Ops: append(pairOf(writes, x), r)})
				break
			}
		}
		res, ok := final[key]
		if !ok {
			out = append(out, Violation{Checker: "siblings", Key: key, Msg: "no final read"})
			continue
		}
		for _, x := range writes {
			if x.Acked() && !slices.Contains(res.Values, x.Value) && !superseded(x, func(*Op) bool { return true }) {
				out = append(out, Violation{Checker: "siblings", Key: key,
					Msg: fmt.Sprintf("final read lacks %q (%d final siblings), overwritten by no write that saw it", x.Value, len(res.Values)),
					Ops: pairOf(writes, x)})
			}
		}
	}
	return out
}

// pairOf returns x and the writes that carried the same context as x at
// the same time (its pair), for the report.
func pairOf(writes []*Op, x *Op) []*Op {
	out := []*Op{x}
	for _, w := range writes {
		if w != x && slices.Equal(w.Saw, x.Saw) && w.Invoke < x.Complete && x.Invoke < w.Complete {
			out = append(out, w)
		}
	}
	return out
}

// ReplicaState is one replica's stored object of a key, for checker (d).
type ReplicaState struct {
	Node string
	Obj  *version.Object
	Err  error
}

// CheckConverged is checker (d), replicas converge: states maps each key to
// its replicas' stored objects, read after the cluster healed and every key
// was read at R=ALL (which repairs). All must be equal.
func CheckConverged(states map[string][]ReplicaState) []Violation {
	var out []Violation
	for key, reps := range states {
		var first *ReplicaState
		for i := range reps {
			r := &reps[i]
			if r.Err != nil {
				out = append(out, Violation{Checker: "converge", Key: key, Msg: fmt.Sprintf("replica %s: %v", r.Node, r.Err)})
				continue
			}
			if first == nil {
				first = r
				continue
			}
			if !objEqual(first.Obj, r.Obj) {
				out = append(out, Violation{Checker: "converge", Key: key,
					Msg: fmt.Sprintf("replicas differ: %s has %s, %s has %s", first.Node, brief(first.Obj), r.Node, brief(r.Obj))})
			}
		}
	}
	return out
}

func objEqual(a, b *version.Object) bool {
	if a.Empty() || b.Empty() {
		return a.Empty() && b.Empty()
	}
	return a.Equal(b)
}

// brief renders an object for a report: its context and its siblings'
// dots, with values cut short.
func brief(o *version.Object) string {
	if o.Empty() {
		return "nothing"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "context %v, siblings", o.Context)
	for _, s := range o.Siblings {
		v := string(s.Value)
		if len(v) > 24 {
			v = v[:24] + "..."
		}
		if s.Deleted {
			v = "(deleted)"
		}
		fmt.Fprintf(&b, " %v=%q", s.Dot, v)
	}
	return b.String()
}
