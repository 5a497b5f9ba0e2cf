package membership

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ringkv/ringkv/ring"
)

func rec(id, gossip string, v uint64) Record {
	return Record{Member: ring.Member{ID: id, State: ring.StateNormal}, GossipAddr: gossip, Version: v}
}

func TestMergeRules(t *testing.T) {
	tab := table{
		self: "a",
		recs: map[string]Record{"a": rec("a", "1.1.1.1:1", 10), "b": rec("b", "2.2.2.2:1", 5)},
		live: map[string]string{"b": "2.2.2.2:1"},
	}
	cases := []struct {
		name string
		in   Record
		want mergeResult
	}{
		{"older", rec("b", "2.2.2.2:1", 4), mergeIgnored},
		{"same version", rec("b", "2.2.2.2:1", 5), mergeIgnored},
		{"newer", rec("b", "2.2.2.2:1", 6), mergeApplied},
		{"unknown", rec("c", "3.3.3.3:1", 1), mergeApplied},
		{"live id at another address", rec("b", "9.9.9.9:1", 100), mergeConflict},
		{"down id moved", rec("c", "4.4.4.4:1", 2), mergeApplied},
		{"our id elsewhere", rec("a", "9.9.9.9:1", 100), mergeConflict},
		{"our old record", rec("a", "1.1.1.1:1", 9), mergeIgnored},
		{"our record, newer elsewhere", rec("a", "1.1.1.1:1", 11), mergeSelf},
	}
	for _, c := range cases {
		if got := tab.merge(c.in); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
	if tab.recs["b"].Version != 6 || tab.recs["c"].GossipAddr != "4.4.4.4:1" || tab.recs["a"].Version != 10 {
		t.Errorf("table after merges: %+v", tab.recs)
	}
}

// An operator's leaving (or left) record for a node whose own record has
// since moved to the same or a newer version is taken anyway: the state
// only moves forward, and every node must end with the same state.
func TestMergeTakesALeavingStateWhateverItsVersion(t *testing.T) {
	tab := table{self: "a", recs: map[string]Record{"b": rec("b", "2.2.2.2:1", 7)}, live: map[string]string{}}
	leaving := rec("b", "2.2.2.2:0", 7) // written from b's version 6, at an older address
	leaving.State = ring.StateLeaving
	if got := tab.merge(leaving); got != mergeApplied {
		t.Fatalf("leaving at the same version: got %d, want applied", got)
	}
	if b := tab.recs["b"]; b.State != ring.StateLeaving || b.Version != 7 || b.GossipAddr != "2.2.2.2:1" {
		t.Fatalf("b after the merge: %+v, want leaving with its own version and address", b)
	}
	normal := rec("b", "2.2.2.2:1", 7)
	if got := tab.merge(normal); got != mergeIgnored || tab.recs["b"].State != ring.StateLeaving {
		t.Fatalf("b's own normal record undid leaving: %d, %+v", got, tab.recs["b"])
	}
	left := rec("b", "2.2.2.2:1", 3)
	left.State = ring.StateLeft
	if got := tab.merge(left); got != mergeApplied || tab.recs["b"].State != ring.StateLeft {
		t.Fatalf("an older left record: %d, %+v", got, tab.recs["b"])
	}
	back := rec("b", "2.2.2.2:1", 2)
	back.State = ring.StateLeaving
	if got := tab.merge(back); got != mergeIgnored || tab.recs["b"].State != ring.StateLeft {
		t.Fatalf("an older leaving record undid left: %d, %+v", got, tab.recs["b"])
	}
}

func TestWireRoundTrip(t *testing.T) {
	r := Record{
		Member:   ring.Member{ID: "n1", Weight: 3, DC: "eu", Rack: "r2", State: ring.StateLeaving},
		PeerAddr: "p:1", RespAddr: "r:2", HTTPAddr: "h:3", GossipAddr: "127.0.0.1:7946", Version: 1<<63 + 5,
	}
	cfg, got, err := decodeMeta(encodeMeta("fp", r))
	if err != nil || cfg != "fp" || got != r {
		t.Fatalf("round trip: %q %+v %v", cfg, got, err)
	}
	if _, _, err := decodeMeta([]byte("garbage")); err == nil {
		t.Error("garbage decoded")
	}
}

func TestRingKey(t *testing.T) {
	if ringKey(ring.Config{}) != ringKey(ring.Config{Partitions: 1024, Replicas: 3, VNodesPerWeight: 64}) {
		t.Error("defaults not applied")
	}
	a := ring.Config{ReplicasPerDC: map[string]int{"x": 2, "y": 1}}
	b := ring.Config{Replicas: 3, ReplicasPerDC: map[string]int{"y": 1, "x": 2}}
	if ringKey(a) != ringKey(b) || fingerprint(a) != fingerprint(b) {
		t.Error("equivalent per-DC configs differ")
	}
	if ringKey(a) == ringKey(ring.Config{Partitions: 512}) {
		t.Error("different configs collide")
	}
}

func TestSaveStateAtomic(t *testing.T) {
	dir := t.TempDir()
	ds := diskState{Format: stateFormat, NodeID: "a", Ring: "k", Records: []wireRecord{toWire(rec("a", "1.1.1.1:1", 1))}}
	if err := saveState(dir, ds); err != nil {
		t.Fatal(err)
	}
	ds.Records = append(ds.Records, toWire(rec("b", "2.2.2.2:1", 7)))
	if err := saveState(dir, ds); err != nil {
		t.Fatal(err)
	}
	recs, _, err := loadState(dir, "a", "k")
	if err != nil || len(recs) != 2 || recs[1].Version != 7 {
		t.Fatalf("load: %+v %v", recs, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("leftover files: %v", ents)
	}
	if recs, _, err := loadState(t.TempDir(), "a", "k"); err != nil || recs != nil {
		t.Errorf("missing file: %v %v", recs, err)
	}
	os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o644)
	if _, _, err := loadState(dir, "a", "k"); err == nil {
		t.Error("corrupt file loaded")
	}
}
