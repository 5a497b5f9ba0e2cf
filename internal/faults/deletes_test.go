package faults

import (
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/version"
)

// op builds a completed op of key k for the checkers' unit tests; times
// are in milliseconds.
func op(id int, kind Kind, value string, from, to int, out Outcome) *Op {
	return &Op{ID: id, Kind: kind, Key: "k", Value: value, Level: "QUORUM", Quorum: 2,
		Invoke: time.Duration(from) * time.Millisecond, Complete: time.Duration(to) * time.Millisecond, Outcome: out}
}

func TestCoverageRules(t *testing.T) {
	x := op(0, Put, "x", 0, 1, OK)
	y := op(1, Put, "y", 2, 3, Info) // may have applied; acknowledged by no one
	d := op(2, Delete, "", 4, 5, OK) // blind: covers x, not y
	z := op(3, Put, "z", 4, 9, OK)   // concurrent with d
	c := op(4, Delete, "", 10, 11, OK)
	c.Context, c.Saw = true, []string{"z"} // covers z, and through nothing else
	cov := Coverage([]*Op{x, y, d, z, c}, 3)
	if !cov[d]["x"] || cov[d]["y"] || cov[d]["z"] {
		t.Errorf("blind delete covers %v, want x only", cov[d])
	}
	if !cov[z]["x"] || cov[z]["y"] {
		t.Errorf("blind put covers %v, want x only", cov[z])
	}
	if !cov[c]["z"] || !cov[c]["x"] || cov[c]["y"] {
		t.Errorf("context delete covers %v, want z and (through z) x", cov[c])
	}
	// y may have applied and nothing covers it: the key may hold y.
	if keys := DeletedKeys([]*Op{x, y, d, z, c}, 3); len(keys) != 0 {
		t.Errorf("DeletedKeys = %v, want none (y is not covered)", keys)
	}
	y.Outcome = Fail
	if keys := DeletedKeys([]*Op{x, y, d, z, c}, 3); !slices.Equal(keys, []string{"k"}) {
		t.Errorf("DeletedKeys = %v, want [k] once y provably failed", keys)
	}
	// At W=ONE a blind write learns from no other replica: it covers only
	// writes acknowledged by every replica.
	x1, d1 := op(0, Put, "x", 0, 1, OK), op(1, Delete, "", 2, 3, OK)
	x1.Quorum, d1.Quorum = 1, 1
	if cov := Coverage([]*Op{x1, d1}, 3); cov[d1]["x"] {
		t.Errorf("a delete at ONE covers a put at ONE: %v", cov[d1])
	}
}

func TestCheckNoResurrectionAndDeletedGone(t *testing.T) {
	x := op(0, Put, "x", 0, 1, OK)
	d := op(1, Delete, "", 2, 3, OK)
	later := op(2, Put, "w", 4, 5, OK)
	ops := []*Op{x, d, later}
	live := func(vs ...string) *version.Object {
		o := &version.Object{Context: version.Clock{}}
		for i, v := range vs {
			o.Siblings = append(o.Siblings, version.Sibling{Dot: version.Dot{Node: "a~1", Counter: uint64(i + 1)}, Value: []byte(v)})
		}
		return o
	}
	// The later write's value may be read; x may not, anywhere.
	if vs := CheckNoResurrection(ops, map[string]ReadResult{"k": {Exists: true, Values: []string{"w"}}},
		map[string][]ReplicaState{"k": {{Node: "n1", Obj: live("w")}}}, 3); len(vs) != 0 {
		t.Errorf("violations for a later write: %v", vs)
	}
	vs := CheckNoResurrection(ops, map[string]ReadResult{"k": {Exists: true, Values: []string{"w", "x"}}},
		map[string][]ReplicaState{"k": {{Node: "n1", Obj: live("w")}, {Node: "n2", Obj: live("x")}}}, 3)
	if len(vs) != 2 {
		t.Errorf("want the final read and n2 reported, got %v", vs)
	}
	// With the later write, the key is not deleted at the end; without it
	// it is, and a replica holding x breaks it.
	if vs := CheckDeletedGone(ops, map[string][]ReplicaState{"k": {{Node: "n1", Obj: live("w")}}}, 3); len(vs) != 0 {
		t.Errorf("key with a later write reported deleted: %v", vs)
	}
	states := map[string][]ReplicaState{"k": {{Node: "n1", Obj: &version.Object{}}, {Node: "n2", Obj: live("x")}}}
	if vs := CheckDeletedGone(ops[:2], states, 3); len(vs) != 1 || vs[0].Checker != "deleted-gone" {
		t.Errorf("want n2 reported, got %v", vs)
	}
}
