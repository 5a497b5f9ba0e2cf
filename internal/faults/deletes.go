package faults

import (
	"fmt"
	"slices"
	"strings"
)

// Coverage is, for one key's writes, a lower bound of what each write's
// stamped causal context covers, as values (writes carry unique values;
// a delete's tombstone has none and is not tracked): the writes it
// supersedes, directly or through the writes they superseded. n is N. A
// write y covers a put x when
//
//   - y carries a context and x's value is in y.Saw: y's read returned x,
//     so y's context covers x's dot;
//   - y is a blind write (a put, a delete, a write of a PutBatch): x was
//     acknowledged before y was invoked (x.Complete < y.Invoke) and
//     x.Quorum + rq(y) > n, where rq(y) = min(y.Quorum, n/2+1) is the
//     read quorum a blind write learns from before it is stamped
//     (coordinator.writeContext: min(W, default R)); that read meets a
//     replica holding x or a later write that covers it. When rq(y) is 1
//     the write reads only its coordinating replica, which holds x only
//     if x.Quorum = n: the same inequality;
//   - y is a write of a PutBatch and x an earlier write of the same key in
//     the same batch (y.Saw) that was acknowledged;
//
// and then also covers everything x covers (contexts only grow: a state
// that superseded x carries x's context). Writes are taken in invocation
// order, so that what x covers is known before any y that covers x.
//
// The rule for blind writes holds at strict quorum only (Config.Strict:
// pw = W, and the reads counted are primaries'): under sloppy quorum a
// write acknowledged by a fallback, or a blind write that learned from one,
// may miss a primary's write, and both rightly survive as siblings.
//
// A blind write that was not stamped (its read failed) covers nothing, but
// it is then no use to anyone: only acknowledged writes are trusted to
// supersede anything in the checkers below. Like CheckRegisterReads, this
// assumes that no node loses acknowledged data (no wiped directories).
func Coverage(kops []*Op, n int) map[*Op]map[string]bool {
	writer := map[string]*Op{}
	cov := map[*Op]map[string]bool{}
	var earlier []*Op // writes in invocation order
	ops := slices.Clone(kops)
	slices.SortStableFunc(ops, func(a, b *Op) int { return int(a.Invoke - b.Invoke) })
	for _, y := range ops {
		if y.Kind != Put && y.Kind != Delete {
			continue
		}
		c := map[string]bool{}
		// take adds v (a put's value; "" for a delete) and what its
		// writer x covers.
		take := func(x *Op, v string) {
			if v != "" {
				c[v] = true
			}
			if x != nil {
				for w := range cov[x] {
					c[w] = true
				}
			}
		}
		switch {
		case y.Context:
			for _, v := range y.Saw {
				take(writer[v], v)
			}
		default:
			rq := min(y.Quorum, n/2+1)
			for _, x := range earlier {
				if x.Acked() && x.Complete < y.Invoke && x.Quorum+rq > n {
					take(x, x.Value)
				}
			}
			if y.Batch != 0 {
				for _, v := range y.Saw {
					if x := writer[v]; x != nil && x.Acked() {
						take(x, v)
					}
				}
			}
		}
		cov[y] = c
		if y.Kind == Put {
			writer[y.Value] = y
		}
		earlier = append(earlier, y)
	}
	return cov
}

// deletedBy maps each value that an acknowledged delete of the key covers
// (Coverage) to the first such delete.
func deletedBy(kops []*Op, cov map[*Op]map[string]bool) map[string]*Op {
	out := map[string]*Op{}
	for _, d := range kops {
		if d.Kind != Delete || !d.Acked() {
			continue
		}
		for v := range cov[d] {
			if out[v] == nil {
				out[v] = d
			}
		}
	}
	return out
}

// CheckNoResurrection is the checker "no deleted key resurrected" for
// register histories of puts and deletes, blind or with a context (the
// Deletes and ContextRegisters workloads). n is N. It looks only at what
// the cluster holds after the faults healed and the replicas converged:
// final, each key's read at R=ALL, and replicas, each key's replicas'
// local states (read from their stores, not through a quorum read).
//
// The rule: a value v is deleted when an acknowledged delete d covers it
// (see Coverage: d's context covers v's dot). d is stored on W replicas
// and contexts never shrink, so once the replicas have merged, every state
// descends d's context and v is dropped from it, whatever was written
// after d (later writes have values of their own; one of unknown outcome
// landing late cannot bring back a dot d covers). So no final read and no
// converged replica may hold v as a live sibling. Writes concurrent with
// d, which it did not see, are not covered and may survive beside its
// tombstone.
func CheckNoResurrection(ops []*Op, final map[string]ReadResult, replicas map[string][]ReplicaState, n int) []Violation {
	var out []Violation
	for key, kops := range byKey(ops) {
		deleted := deletedBy(kops, Coverage(kops, n))
		if len(deleted) == 0 {
			continue
		}
		writer := map[string]*Op{}
		for _, o := range kops {
			if o.Kind == Put {
				writer[o.Value] = o
			}
		}
		report := func(where, v string, r *Op) {
			d := deleted[v]
			ops := []*Op{}
			if x := writer[v]; x != nil {
				ops = append(ops, x)
			}
			ops = append(ops, d)
			if r != nil {
				ops = append(ops, r)
			}
			out = append(out, Violation{Checker: "resurrect", Key: key,
				Msg: fmt.Sprintf("%s holds %q, deleted by #%d (acknowledged)", where, Abbrev(v), d.ID), Ops: ops})
		}
		if res, ok := final[key]; ok {
			var r *Op
			for _, o := range kops {
				if o.Kind == Read && o.Client < 0 && o.Acked() {
					r = o // the final read
				}
			}
			for _, v := range res.Values {
				if deleted[v] != nil {
					report("the final read at ALL", v, r)
				}
			}
		}
		for _, st := range replicas[key] {
			if st.Err != nil {
				continue // CheckConverged reports it
			}
			for _, s := range st.Obj.Live() {
				if v := string(s.Value); deleted[v] != nil {
					report("replica "+st.Node+" (its local store)", v, nil)
				}
			}
		}
	}
	return out
}

// DeletedKeys returns the keys that must read as not found once the
// replicas have merged: keys with an acknowledged delete where every put
// that may have been applied (outcome other than Fail) is covered by an
// acknowledged write (Coverage). The last of those puts is then covered by
// a delete, and no put is concurrent with the end of the history: every
// live sibling a replica could hold is superseded. (This is the precise
// form of "the key's last acknowledged operation is a delete and no write
// is concurrent with it or later".)
func DeletedKeys(ops []*Op, n int) []string {
	var keys []string
	for key, kops := range byKey(ops) {
		cov := Coverage(kops, n)
		covered := map[string]bool{}
		hasDelete, hasPut := false, false
		for _, y := range kops {
			if (y.Kind == Put || y.Kind == Delete) && y.Acked() {
				for v := range cov[y] {
					covered[v] = true
				}
				hasDelete = hasDelete || y.Kind == Delete
			}
		}
		ok := hasDelete
		for _, x := range kops {
			if x.Kind == Put && x.MayHaveApplied() {
				hasPut = true
				if !covered[x.Value] {
					ok = false
					break
				}
			}
		}
		if ok && hasPut {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

// CheckDeletedGone is the final-state check of deletes: every key of
// DeletedKeys reads as not found (no live sibling) on every replica, in
// states read directly from each replica's local store, after the heal and
// the replicas' convergence (or, for the returning-node scenario, after
// hinted handoff alone, with no client read at all). A replica that lacks
// the key entirely also reads as not found.
func CheckDeletedGone(ops []*Op, states map[string][]ReplicaState, n int) []Violation {
	var out []Violation
	perKey := byKey(ops)
	for _, key := range DeletedKeys(ops, n) {
		for _, st := range states[key] {
			if st.Err != nil {
				out = append(out, Violation{Checker: "deleted-gone", Key: key, Msg: fmt.Sprintf("replica %s: %v", st.Node, st.Err)})
				continue
			}
			live := st.Obj.Live()
			if len(live) == 0 {
				continue
			}
			vs := make([]string, len(live))
			for i, s := range live {
				vs[i] = Abbrev(string(s.Value))
			}
			var last *Op
			for _, o := range perKey[key] {
				if o.Kind == Delete && o.Acked() {
					last = o
				}
			}
			out = append(out, Violation{Checker: "deleted-gone", Key: key,
				Msg: fmt.Sprintf("every value was deleted, but replica %s stores live siblings %s", st.Node, strings.Join(vs, ", ")),
				Ops: []*Op{last}})
		}
	}
	return out
}
