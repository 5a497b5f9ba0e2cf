package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/version"
)

// dcRing builds a ring of the given datacenters: nodes[dc] members in each
// (named dc-1, dc-2, ...), perDC replicas (nil: a ring without
// ReplicasPerDC, of N=3).
func dcRing(t *testing.T, nodes map[string]int, perDC map[string]int) *ring.Ring {
	t.Helper()
	var members []ring.Member
	for dc, k := range nodes {
		for i := range k {
			members = append(members, ring.Member{ID: fmt.Sprintf("%s-%d", dc, i+1), DC: dc, State: ring.StateNormal})
		}
	}
	rg, err := ring.New(ring.Config{Partitions: 16, ReplicasPerDC: perDC}, members)
	if err != nil {
		t.Fatal(err)
	}
	return rg
}

func routeOf(rg *ring.Ring, p int) route {
	return route{pref: rg.Preference(p), targets: rg.Targets(p, func(string) bool { return true }), n: rg.Replicas(), rg: rg}
}

func TestDatacenterLevelsParseAndFormat(t *testing.T) {
	for s, want := range map[string]int{"LOCAL_ONE": LocalOne, "local_quorum": LocalQuorum, " Each_Quorum ": EachQuorum} {
		lv, err := ParseLevel(s)
		if err != nil || lv != want {
			t.Fatalf("ParseLevel(%q) = %d, %v; want %d", s, lv, err, want)
		}
		if back, err := ParseLevel(FormatLevel(lv)); err != nil || back != lv {
			t.Fatalf("FormatLevel(%d) = %q does not parse back: %d %v", lv, FormatLevel(lv), back, err)
		}
		if _, err := ParsePrimaryLevel(s); !errors.Is(err, ErrBadLevel) {
			t.Fatalf("ParsePrimaryLevel(%q): %v, want ErrBadLevel (pr and pw count primaries)", s, err)
		}
		if _, err := resolvePrimaries("write", lv, 3, 3); !errors.Is(err, ErrBadLevel) {
			t.Fatalf("resolvePrimaries(%s): %v, want ErrBadLevel", s, err)
		}
	}
	if _, err := ParseLevel("LOCAL"); err == nil {
		t.Fatal(`ParseLevel("LOCAL") accepted`)
	}
}

// Datacenter levels resolve against the configured ReplicasPerDC, for the
// local datacenter; on a ring without it they are ONE and QUORUM.
func TestResolveDatacenterLevels(t *testing.T) {
	three := dcRing(t, map[string]int{"dc1": 3, "dc2": 3}, map[string]int{"dc1": 3, "dc2": 3})
	two := dcRing(t, map[string]int{"dc1": 3, "dc2": 3}, map[string]int{"dc1": 2, "dc2": 2})
	uneven := dcRing(t, map[string]int{"dc1": 3, "dc2": 1}, map[string]int{"dc1": 3, "dc2": 1})
	flat := dcRing(t, map[string]int{"": 5}, nil)
	cases := []struct {
		name  string
		rg    *ring.Ring
		level int
		def   int
		local string
		count int
		dcs   []dcNeed
	}{
		{"LOCAL_ONE 3+3", three, LocalOne, Default, "dc1", 1, []dcNeed{{"dc1", 1, 3}}},
		{"LOCAL_QUORUM 3+3", three, LocalQuorum, Default, "dc2", 2, []dcNeed{{"dc2", 2, 3}}},
		{"EACH_QUORUM 3+3", three, EachQuorum, Default, "dc2", 4, []dcNeed{{"dc1", 2, 3}, {"dc2", 2, 3}}},
		{"QUORUM 3+3 is a global majority", three, Quorum, Default, "dc1", 4, nil},
		{"ALL 3+3", three, All, Default, "dc1", 6, nil},
		{"LOCAL_QUORUM 2+2", two, LocalQuorum, Default, "dc1", 2, []dcNeed{{"dc1", 2, 2}}},
		{"EACH_QUORUM 2+2", two, EachQuorum, Default, "dc1", 4, []dcNeed{{"dc1", 2, 2}, {"dc2", 2, 2}}},
		{"QUORUM 2+2", two, Quorum, Default, "dc1", 3, nil},
		{"LOCAL_QUORUM of one replica", uneven, LocalQuorum, Default, "dc2", 1, []dcNeed{{"dc2", 1, 1}}},
		{"EACH_QUORUM 3+1", uneven, EachQuorum, Default, "dc2", 3, []dcNeed{{"dc1", 2, 3}, {"dc2", 1, 1}}},
		{"a default of LOCAL_QUORUM", three, Default, LocalQuorum, "dc1", 2, []dcNeed{{"dc1", 2, 3}}},
		{"an explicit level over a DC default", three, One, LocalQuorum, "dc1", 1, nil},
		{"no ReplicasPerDC: LOCAL_QUORUM is QUORUM", flat, LocalQuorum, Default, "", 2, nil},
		{"no ReplicasPerDC: EACH_QUORUM is QUORUM", flat, EachQuorum, Default, "", 2, nil},
		{"no ReplicasPerDC: LOCAL_ONE is ONE", flat, LocalOne, Default, "", 1, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for p := range tc.rg.Partitions() {
				nd, err := resolveLevel("write", tc.level, tc.def, routeOf(tc.rg, p), tc.local)
				if err != nil {
					t.Fatalf("partition %d: %v", p, err)
				}
				if nd.count != tc.count || !slices.Equal(nd.dcs, tc.dcs) {
					t.Fatalf("partition %d: %d %+v, want %d %+v", p, nd.count, nd.dcs, tc.count, tc.dcs)
				}
			}
		})
	}
}

// Levels count against the configured counts, never the replicas placed:
// a datacenter that has fewer nodes than it is meant to hold replicas (or
// none yet) refuses the levels that need more, naming the datacenter.
func TestDatacenterLevelsCountAgainstConfiguredReplicas(t *testing.T) {
	// dc2 is meant to hold 3 replicas but has no node yet; dc3 holds none.
	rg := dcRing(t, map[string]int{"dc1": 3, "dc3": 1}, map[string]int{"dc1": 3, "dc2": 3, "dc3": 0})
	rt := routeOf(rg, 0)
	var qe *QuorumError
	if _, err := resolveLevel("write", EachQuorum, Default, rt, "dc1"); !errors.As(err, &qe) ||
		!errors.Is(err, ErrTooFewReplicas) || qe.DC != "dc2" || qe.Needed != 2 || qe.Replicas != 0 || qe.N != 3 {
		t.Fatalf("EACH_QUORUM with an empty dc2: %v, want ErrTooFewReplicas for dc2 (2 needed, 0 placed, 3 meant)", err)
	}
	if nd, err := resolveLevel("write", LocalQuorum, Default, rt, "dc1"); err != nil || nd.count != 2 {
		t.Fatalf("LOCAL_QUORUM in dc1: %+v %v, want 2", nd, err)
	}
	if _, err := resolveLevel("write", LocalQuorum, Default, rt, "dc3"); !errors.Is(err, ErrBadLevel) {
		t.Fatalf("LOCAL_QUORUM from dc3, which holds no replicas: %v, want ErrBadLevel", err)
	}
	if _, err := resolveLevel("read", LocalOne, Default, rt, "dc2"); !errors.As(err, &qe) || qe.DC != "dc2" {
		t.Fatalf("LOCAL_ONE in dc2 with no node: %v, want ErrTooFewReplicas for dc2", err)
	}
	// Two nodes in a datacenter meant to hold five replicas: LOCAL_QUORUM
	// needs three.
	short := dcRing(t, map[string]int{"dc1": 2}, map[string]int{"dc1": 5})
	if _, err := resolveLevel("write", LocalQuorum, Default, routeOf(short, 0), "dc1"); !errors.As(err, &qe) ||
		qe.Needed != 3 || qe.Replicas != 2 || qe.N != 5 {
		t.Fatalf("LOCAL_QUORUM of 5 with 2 nodes: %v, want 3 needed, 2 placed", err)
	}
	if msg := qe.Error(); !containsAll(msg, `datacenter "dc1"`, "needs 3", "places 2") {
		t.Fatalf("error %q does not say which datacenter and how many", msg)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// A write at a datacenter level waits for acknowledgements from the
// level's datacenters only: any number from elsewhere does not meet it,
// and it stops as soon as a datacenter can no longer meet its count.
func TestTallyCountsPerDatacenter(t *testing.T) {
	fail := errors.New("cut")
	local := quorum{w: 2, dcs: []dcNeed{{"dc1", 2, 3}}, selfDC: "dc1"}
	each := quorum{w: 4, dcs: []dcNeed{{"dc1", 2, 3}, {"dc2", 2, 3}}, selfDC: "dc1"}
	// Five other targets: two in dc1, three in dc2.
	sent := func(q quorum) fanout {
		var f fanout
		for _, dc := range []string{"dc1", "dc1", "dc2", "dc2", "dc2"} {
			f.add(q, true, dc)
		}
		return f
	}
	cases := []struct {
		name      string
		q         quorum
		answers   []ack
		done, met bool
		failDC    string
	}{
		{"remote acks do not meet LOCAL_QUORUM", local, []ack{{dc: "dc2"}, {dc: "dc2"}, {dc: "dc2"}}, false, false, ""},
		{"one local ack meets LOCAL_QUORUM", local, []ack{{dc: "dc2"}, {dc: "dc1"}}, true, true, ""},
		{"remote failures do not matter to LOCAL_QUORUM", local, []ack{{dc: "dc2", err: fail}, {dc: "dc2", err: fail}, {dc: "dc2", err: fail}, {dc: "dc1"}}, true, true, ""},
		{"local failures end LOCAL_QUORUM", local, []ack{{dc: "dc1", err: fail}, {dc: "dc1", err: fail}, {dc: "dc2"}}, true, false, "dc1"},
		{"EACH_QUORUM waits for dc2", each, []ack{{dc: "dc1"}, {dc: "dc1"}, {dc: "dc2"}}, false, false, ""},
		{"EACH_QUORUM met", each, []ack{{dc: "dc1"}, {dc: "dc2"}, {dc: "dc2"}}, true, true, ""},
		{"EACH_QUORUM still reachable", each, []ack{{dc: "dc1"}, {dc: "dc2", err: fail}, {dc: "dc2"}}, false, false, ""},
		{"EACH_QUORUM out of reach in dc2", each, []ack{{dc: "dc1"}, {dc: "dc2", err: fail}, {dc: "dc2", err: fail}}, true, false, "dc2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTally(tc.q, nil, sent(tc.q))
			for _, a := range tc.answers {
				a.primary = true
				tl.count(a)
			}
			if tl.done() != tc.done || tl.met() != tc.met {
				t.Fatalf("done %v met %v, want %v %v", tl.done(), tl.met(), tc.done, tc.met)
			}
			if tc.failDC != "" {
				var qe *QuorumError
				if err := tl.failure(6); !errors.As(err, &qe) || qe.DC != tc.failDC || qe.Op != "write" {
					t.Fatalf("failure %v, want one for datacenter %s", err, tc.failDC)
				}
			}
		})
	}
	// At the deadline, the datacenter not met is the one reported.
	tl := newTally(local, nil, sent(local))
	tl.count(ack{dc: "dc2", primary: true})
	var qe *QuorumError
	if err := tl.failure(6); !errors.As(err, &qe) || qe.DC != "dc1" || qe.Needed != 2 || qe.Answered != 1 || qe.Replicas != 3 {
		t.Fatalf("deadline failure %v, want dc1: 1 of 2 (3 replicas there)", err)
	}
}

// The coordinating replica's own acknowledgement counts for its own
// datacenter only: on a node of another datacenter (a forwarded write
// whose client-facing datacenter has no replica up) LOCAL_ONE waits for
// the local datacenter.
func TestOwnAcknowledgementCountsForItsDatacenter(t *testing.T) {
	if !(quorum{w: 1, dcs: []dcNeed{{"dc1", 1, 3}}, selfDC: "dc1"}).metLocally() {
		t.Fatal("LOCAL_ONE in dc1 is not met by a dc1 coordinator's own write")
	}
	if (quorum{w: 1, dcs: []dcNeed{{"dc2", 1, 3}}, selfDC: "dc1"}).metLocally() {
		t.Fatal("LOCAL_ONE for dc2 is met by a dc1 coordinator's own write")
	}
	tl := newTally(quorum{w: 1, dcs: []dcNeed{{"dc2", 1, 3}}, selfDC: "dc1"}, nil, fanout{})
	if tl.met() {
		t.Fatal("a dc1 coordinator's acknowledgement met LOCAL_ONE for dc2")
	}
}

// A forwarded write carries its local datacenter, with levels offset so
// that nodes that predate datacenter levels refuse it instead of reading
// another level; a write without one is encoded as before.
func TestWriteRequestCodecCarriesTheDatacenter(t *testing.T) {
	for _, req := range []writeRequest{
		{key: []byte("k"), value: []byte("v"), w: LocalQuorum, dc: "dc2"},
		{key: []byte("k"), value: []byte("v"), w: LocalOne, pw: Quorum, dc: "east"},
		{key: []byte("k"), deleted: true, w: EachQuorum, pw: 2, dc: "dc1"},
		{key: []byte("k"), w: 3, dc: "dc1"},
		{key: []byte("k"), w: LocalQuorum}, // a ring without ReplicasPerDC
	} {
		enc := encodeWrite(req)
		got, err := decodeWrite(enc)
		if err != nil {
			t.Fatalf("decode %+v: %v", req, err)
		}
		if got.w != req.w || got.pw != req.pw || got.dc != req.dc || got.deleted != req.deleted ||
			string(got.key) != "k" || string(got.value) != string(req.value) {
			t.Fatalf("round trip of %+v gave %+v", req, got)
		}
		// What a node before datacenter levels checks: w+3 at most 2^20.
		if w, n := binary.Uvarint(enc[1:]); n <= 0 || w <= 1<<20 {
			t.Fatalf("%+v: w field %d would be accepted by an older node", req, w)
		}
	}
	plain := encodeWrite(writeRequest{key: []byte("k"), value: []byte("v"), w: Quorum})
	if want := []byte{0, byte(Quorum + 3), 1, 'k', 0, 'v'}; string(plain) != string(want) {
		t.Fatalf("a write without a datacenter is encoded %x, want %x as before", plain, want)
	}
	// Malformed: a level below EACH_QUORUM, a datacenter cut short.
	for _, b := range [][]byte{
		binary.AppendUvarint([]byte{8}, uint64(levelBase+EachQuorum-1)),
		append(binary.AppendUvarint([]byte{8}, uint64(levelBase+LocalQuorum)), 5, 'd'),
	} {
		if _, err := decodeWrite(b); !errors.Is(err, errMalformed) {
			t.Fatalf("decodeWrite(%x): %v, want errMalformed", b, err)
		}
	}
}

// A forwarded write carries its write ID (flag 16), which nodes before
// write IDs refuse as an unknown flag; a write without one is encoded as
// before, and an ID of 0 or one cut short is malformed.
func TestWriteRequestCodecCarriesTheWriteID(t *testing.T) {
	for _, req := range []writeRequest{
		{key: []byte("k"), value: []byte("v"), w: Quorum, pw: Default, id: 1},
		{key: []byte("k"), deleted: true, hasCtx: true, ctx: version.Clock{"a": 1}, w: LocalQuorum, pw: 1, dc: "dc1", id: 0xffffffffffffffff},
	} {
		got, err := decodeWrite(encodeWrite(req))
		if err != nil || got.id != req.id || got.dc != req.dc || got.w != req.w || string(got.key) != "k" || got.deleted != req.deleted {
			t.Fatalf("round trip of %+v gave %+v, %v", req, got, err)
		}
	}
	named := encodeWrite(writeRequest{key: []byte("k"), value: []byte("v"), w: Quorum, id: 0x0102030405060708})
	if want := []byte{16, byte(Quorum + 3), 1, 2, 3, 4, 5, 6, 7, 8, 1, 'k', 0, 'v'}; string(named) != string(want) {
		t.Fatalf("a named write is encoded %x, want %x", named, want)
	}
	if named[0]&^(1|2|4|8) == 0 {
		t.Fatal("a named write sets no flag that older nodes refuse")
	}
	for _, b := range [][]byte{
		{16, byte(Quorum + 3), 0, 0, 0, 0, 0, 0, 0, 0, 1, 'k', 0},
		{16, byte(Quorum + 3), 1, 2, 3},
	} {
		if _, err := decodeWrite(b); !errors.Is(err, errMalformed) {
			t.Fatalf("decodeWrite(%x): %v, want errMalformed", b, err)
		}
	}
}

// A node that is not a replica forwards to a replica of its own
// datacenter that is up, then the other live ones, then those down.
func TestForwardOrderPrefersTheLocalDatacenter(t *testing.T) {
	rg := dcRing(t, map[string]int{"dc1": 3, "dc2": 3}, map[string]int{"dc1": 2, "dc2": 2})
	view := NewStaticCluster(rg, nil)
	flat := dcRing(t, map[string]int{"": 4}, nil)
	for p := range rg.Partitions() {
		rt := routeOf(rg, p)
		c := &Coordinator{self: "none", cluster: view}
		var down string
		for _, node := range rt.pref {
			if rg.DC(node) == "dc2" {
				down = node
				break
			}
		}
		view.SetAlive(down, false)
		order := c.forwardOrder(rt, "dc2")
		view.SetAlive(down, true)
		if len(order) != 4 || rg.DC(order[0]) != "dc2" || order[0] == down || order[3] != down {
			t.Fatalf("partition %d (pref %v, %s down): order %v, want the live dc2 replica first and %s last", p, rt.pref, down, order, down)
		}
		if got := c.forwardOrder(routeOf(flat, p), ""); len(got) != 3 {
			t.Fatalf("without ReplicasPerDC: %v, want the 3 primaries once each", got)
		}
	}
}
