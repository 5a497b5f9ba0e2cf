package ring

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func nodes(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("node-%02d", i), State: StateNormal}
	}
	return ms
}

// failer is what mustNew needs from *testing.T, *testing.B and *rapid.T.
type failer interface {
	Helper()
	Fatalf(format string, args ...any)
}

func mustNew(t failer, cfg Config, ms []Member) *Ring {
	t.Helper()
	r, err := New(cfg, ms)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func TestStateStringAndParseRoundTrip(t *testing.T) {
	for _, s := range []State{StateJoining, StateNormal, StateLeaving, StateLeft} {
		got, err := ParseState(strings.ToUpper(s.String()))
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v; want %v", s.String(), got, err, s)
		}
	}
	if _, err := ParseState("gone"); err == nil {
		t.Error("ParseState(gone) succeeded")
	}
	if got := State(9).String(); got != "State(9)" {
		t.Errorf("State(9).String() = %q", got)
	}
}

func TestNewRejectsInvalidInputWithClearErrors(t *testing.T) {
	dc := func(id, dc string) Member { return Member{ID: id, DC: dc, State: StateNormal} }
	cases := []struct {
		name    string
		cfg     Config
		members []Member
		want    string
	}{
		{"duplicate id", Config{}, []Member{dc("a", ""), dc("a", "")}, `duplicate member ID "a"`},
		{"empty id", Config{}, []Member{dc("", "")}, "empty ID"},
		{"partitions not power of two", Config{Partitions: 1000}, nil, "partitions = 1000"},
		{"partitions negative", Config{Partitions: -4}, nil, "partitions = -4"},
		{"partitions too many", Config{Partitions: 1 << 21}, nil, "partitions = 2097152"},
		{"replicas negative", Config{Replicas: -1}, nil, "replicas = -1"},
		{"vnodes negative", Config{VNodesPerWeight: -1}, nil, "vnodes per weight = -1"},
		{"weight negative", Config{}, []Member{{ID: "a", Weight: -2}}, `member "a": weight -2`},
		{"weight too large", Config{}, []Member{{ID: "a", Weight: MaxWeight + 1}}, `member "a": weight`},
		{"bad state", Config{}, []Member{{ID: "a", State: 7}}, `member "a": unknown state 7`},
		{"member dc without count", Config{ReplicasPerDC: map[string]int{"dc1": 2}},
			[]Member{dc("a", "dc1"), dc("b", "dc2")}, `DC "dc2" has members but no replica count`},
		{"replicas disagree with per-dc sum", Config{Replicas: 3, ReplicasPerDC: map[string]int{"dc1": 2}},
			[]Member{dc("a", "dc1")}, "sum to 2"},
		{"negative dc count", Config{ReplicasPerDC: map[string]int{"dc1": -1, "dc2": 2}},
			[]Member{dc("a", "dc1"), dc("b", "dc2")}, `DC "dc1" = -1`},
		{"per-dc counts sum to zero", Config{ReplicasPerDC: map[string]int{"dc1": 0}},
			[]Member{dc("a", "dc1")}, "replicas = 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg, c.members)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestZeroConfigTakesDefaults(t *testing.T) {
	r := mustNew(t, Config{}, nodes(3))
	want := Config{Partitions: DefaultPartitions, Replicas: DefaultReplicas, VNodesPerWeight: DefaultVNodesPerWeight}
	if got := r.Config(); got.Partitions != want.Partitions || got.Replicas != want.Replicas ||
		got.VNodesPerWeight != want.VNodesPerWeight || got.ReplicasPerDC != nil {
		t.Errorf("Config() = %+v, want %+v", got, want)
	}
	if r.Partitions() != DefaultPartitions || r.Replicas() != DefaultReplicas {
		t.Errorf("Partitions, Replicas = %d, %d", r.Partitions(), r.Replicas())
	}
	if m, _ := r.Member("node-00"); m.Weight != 1 {
		t.Errorf("zero weight became %d, want 1", m.Weight)
	}
}

func TestReplicasDeriveFromPerDCCounts(t *testing.T) {
	ms := []Member{{ID: "a", DC: "x"}, {ID: "b", DC: "y"}}
	perDC := map[string]int{"x": 2, "y": 1}
	r := mustNew(t, Config{ReplicasPerDC: perDC}, ms)
	if r.Replicas() != 3 {
		t.Errorf("Replicas() = %d, want 3", r.Replicas())
	}
	perDC["x"] = 9
	r.Config().ReplicasPerDC["y"] = 9
	if got := r.Config().ReplicasPerDC; got["x"] != 2 || got["y"] != 1 {
		t.Errorf("ring aliases a config map: %v", got)
	}
}

// A DC named in the per-DC counts may have no members yet (a multi-DC
// cluster starts one node at a time): its share of each preference list is
// missing until it has members, and the other DCs' shares are whole.
func TestPerDCCountsWithAnEmptyDC(t *testing.T) {
	dc := func(id, dc string) Member { return Member{ID: id, DC: dc, State: StateNormal} }
	perDC := map[string]int{"dc1": 2, "dc2": 1}
	ms := []Member{dc("a", "dc1"), dc("b", "dc1"), dc("c", "dc1")}
	r := mustNew(t, Config{Partitions: 64, ReplicasPerDC: perDC}, ms)
	inDC := func(id string) string { m, _ := r.Member(id); return m.DC }
	for p := range r.Partitions() {
		pref := r.Preference(p)
		if len(pref) != 2 || inDC(pref[0]) != "dc1" || inDC(pref[1]) != "dc1" {
			t.Fatalf("partition %d with dc2 empty: preference %v, want two dc1 nodes", p, pref)
		}
	}
	if r.Replicas() != 3 || r.Placed() != 2 {
		t.Fatalf("with dc2 empty: Replicas %d, Placed %d; want 3 and 2", r.Replicas(), r.Placed())
	}
	r = mustNew(t, Config{Partitions: 64, ReplicasPerDC: perDC}, append(ms, dc("d", "dc2")))
	if r.Placed() != 3 {
		t.Fatalf("once dc2 has a member: Placed %d, want 3", r.Placed())
	}
	for p := range r.Partitions() {
		pref := r.Preference(p)
		count := map[string]int{}
		for _, id := range pref {
			count[inDC(id)]++
		}
		if count["dc1"] != 2 || count["dc2"] != 1 {
			t.Fatalf("partition %d once dc2 has a member: preference %v, want two dc1 nodes and one dc2", p, pref)
		}
	}
}

func TestOnlyNormalAndLeavingMembersOwnPartitions(t *testing.T) {
	ms := []Member{
		{ID: "normal", State: StateNormal},
		{ID: "leaving", State: StateLeaving},
		{ID: "joining", State: StateJoining},
		{ID: "left", State: StateLeft},
	}
	r := mustNew(t, Config{Partitions: 64}, ms)
	for p := range r.Partitions() {
		got := slices.Sorted(slices.Values(r.Preference(p)))
		if !slices.Equal(got, []string{"leaving", "normal"}) {
			t.Fatalf("partition %d: preference %v, want leaving and normal only", p, r.Preference(p))
		}
	}
	if len(r.Members()) != 4 {
		t.Errorf("Members() has %d entries, want all 4", len(r.Members()))
	}
	if m, ok := r.Member("joining"); !ok || m.State != StateJoining {
		t.Errorf("Member(joining) = %+v, %v", m, ok)
	}
	if _, ok := r.Member("nobody"); ok {
		t.Error("Member(nobody) found")
	}
}

func TestFewerEligibleNodesThanReplicasGivesShorterLists(t *testing.T) {
	r := mustNew(t, Config{Partitions: 16, Replicas: 5}, nodes(2))
	for p := range r.Partitions() {
		if len(r.Preference(p)) != 2 {
			t.Fatalf("partition %d: %v, want both nodes", p, r.Preference(p))
		}
	}
	empty := mustNew(t, Config{Partitions: 16}, nil)
	if got := empty.PreferenceForKey([]byte("k")); len(got) != 0 {
		t.Errorf("empty ring gives %v", got)
	}
}

func TestPartitionRangesCoverTokenSpaceExactly(t *testing.T) {
	for _, q := range []int{1, 2, 64, 1024} {
		r := mustNew(t, Config{Partitions: q}, nodes(1))
		var next uint64
		for p := range q {
			first, last := r.PartitionRange(p)
			if first != next || last < first {
				t.Fatalf("Q=%d: partition %d is [%#x, %#x], want it to start at %#x", q, p, first, last, next)
			}
			if r.Partition(first) != p || r.Partition(last) != p {
				t.Fatalf("Q=%d: ends of partition %d map to %d and %d", q, p, r.Partition(first), r.Partition(last))
			}
			next = last + 1
		}
		if _, last := r.PartitionRange(q - 1); last != ^uint64(0) {
			t.Errorf("Q=%d: last partition ends at %#x, want 2^64-1", q, last)
		}
	}
}

func TestPartitionIsTopBitsOfToken(t *testing.T) {
	r := mustNew(t, Config{Partitions: 1024}, nodes(3))
	for i := range 1000 {
		key := fmt.Appendf(nil, "key-%d", i)
		if got, want := r.PartitionOfKey(key), int(Token(key)>>54); got != want {
			t.Fatalf("PartitionOfKey(%s) = %d, want %d", key, got, want)
		}
		if !slices.Equal(r.PreferenceForKey(key), r.Preference(r.PartitionOfKey(key))) {
			t.Fatalf("PreferenceForKey(%s) disagrees with Preference", key)
		}
	}
}

func TestOwnershipAndReplicaCountMatchPreferenceLists(t *testing.T) {
	r := mustNew(t, Config{Partitions: 256}, nodes(5))
	own := r.Ownership()
	total := 0
	for id, ps := range own {
		for _, p := range ps {
			if r.Preference(p)[0] != id {
				t.Fatalf("Ownership says %s is primary of %d; list is %v", id, p, r.Preference(p))
			}
		}
		total += len(ps)
	}
	if total != 256 {
		t.Errorf("Ownership covers %d partitions, want 256", total)
	}
	slots := 0
	for _, c := range r.ReplicaCount() {
		slots += c
	}
	if slots != 256*3 {
		t.Errorf("ReplicaCount sums to %d, want %d", slots, 256*3)
	}
}

func TestDiffReportsGainedAndLostReplicas(t *testing.T) {
	old := mustNew(t, Config{Partitions: 128}, nodes(4))
	ms := nodes(5)
	grown := mustNew(t, Config{Partitions: 128}, ms)
	moves := Diff(old, grown)
	if len(moves) == 0 {
		t.Fatal("adding a node moved nothing")
	}
	for _, m := range moves {
		if !slices.Equal(m.Old, old.Preference(m.Partition)) || !slices.Equal(m.New, grown.Preference(m.Partition)) {
			t.Fatalf("move %d does not carry the two lists", m.Partition)
		}
		if len(m.Gained()) != len(m.Lost()) {
			t.Errorf("partition %d gained %v but lost %v", m.Partition, m.Gained(), m.Lost())
		}
		if len(m.Gained()) == 0 && !m.PrimaryChanged() {
			t.Errorf("partition %d reported with no change", m.Partition)
		}
	}
	if len(Diff(grown, grown)) != 0 {
		t.Error("a ring differs from itself")
	}
}

func TestDiffPanicsOnDifferentPartitionCounts(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	Diff(mustNew(t, Config{Partitions: 8}, nodes(1)), mustNew(t, Config{Partitions: 16}, nodes(1)))
}

// Placement is part of the protocol: nodes running different versions
// during a rolling upgrade must compute the same ring, or they disagree
// about who owns what. Any change to the placement algorithm therefore
// changes this digest and needs a migration story, not a new constant.
func TestPlacementGoldenDigestNeverChanges(t *testing.T) {
	ms := []Member{
		{ID: "a", Weight: 1, DC: "dc1", Rack: "r1", State: StateNormal},
		{ID: "b", Weight: 2, DC: "dc1", Rack: "r2", State: StateNormal},
		{ID: "c", Weight: 1, DC: "dc1", Rack: "r3", State: StateLeaving},
		{ID: "d", Weight: 3, DC: "dc1", Rack: "r1", State: StateNormal},
		{ID: "e", Weight: 1, DC: "dc2", Rack: "r1", State: StateNormal},
		{ID: "f", Weight: 2, DC: "dc2", Rack: "r2", State: StateNormal},
		{ID: "g", Weight: 1, DC: "dc2", Rack: "r2", State: StateJoining},
	}
	for _, c := range []struct {
		cfg  Config
		want uint64
	}{
		{Config{Partitions: 256}, 0xe9cb6b171a899f76},
		{Config{Partitions: 256, ReplicasPerDC: map[string]int{"dc1": 2, "dc2": 1}}, 0xf2ee0789df0120cf},
	} {
		r := mustNew(t, c.cfg, ms)
		var b strings.Builder
		for p := range r.Partitions() {
			fmt.Fprintf(&b, "%d:%s;", p, strings.Join(r.Preference(p), ","))
		}
		if got := Token([]byte(b.String())); got != c.want {
			t.Errorf("placement digest for %+v = %#x, want %#x", c.cfg, got, c.want)
		}
	}
}
