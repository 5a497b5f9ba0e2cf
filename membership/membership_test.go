package membership

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// testRing keeps ring builds cheap.
var testRing = ring.Config{Partitions: 64, Replicas: 3, VNodesPerWeight: 16}

// testLog returns a Logf that forwards to t.Logf only while the test runs;
// memberlist goroutines may still log for a moment after Close.
func testLog(t *testing.T) func(string, ...any) {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done && testing.Verbose() {
			t.Logf(format, args...)
		}
	}
}

// freePort returns a port that was free a moment ago on 127.0.0.1 for
// both TCP and UDP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

type harness struct {
	t   *testing.T
	log func(string, ...any)
	dir string
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, log: testLog(t), dir: t.TempDir()}
}

// config returns the config of node id; its gossip port is fixed on first
// use so a restarted node comes back at the same address.
func (h *harness) config(id string, join ...string) Config {
	return Config{
		NodeID:   id,
		BindAddr: fmt.Sprintf("127.0.0.1:%d", freePort(h.t)),
		PeerAddr: "peer-" + id + ":1",
		RespAddr: "resp-" + id + ":2",
		HTTPAddr: "http-" + id + ":3",
		Join:     join,
		DataDir:  filepath.Join(h.dir, id),
		Ring:     testRing,
		Logf:     h.log,
	}
}

func (h *harness) start(cfg Config) *Membership {
	h.t.Helper()
	m, err := Start(cfg)
	if err != nil {
		h.t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	h.t.Cleanup(func() { m.Close() })
	return m
}

// cluster starts n nodes n0..n(n-1), each joining n0.
func (h *harness) cluster(n int) ([]*Membership, []Config) {
	var ms []*Membership
	var cfgs []Config
	for i := range n {
		var join []string
		if i > 0 {
			join = []string{ms[0].LocalNode().GossipAddr}
		}
		cfg := h.config(fmt.Sprintf("n%d", i), join...)
		cfgs = append(cfgs, cfg)
		ms = append(ms, h.start(cfg))
	}
	return ms, cfgs
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
}

func ringIDs(r *ring.Ring, state ring.State) []string {
	var ids []string
	for _, mb := range r.Members() {
		if mb.State == state {
			ids = append(ids, mb.ID)
		}
	}
	return ids
}

func samePrefs(a, b *ring.Ring) bool {
	if a.Partitions() != b.Partitions() {
		return false
	}
	for p := range a.Partitions() {
		if !slices.Equal(a.Preference(p), b.Preference(p)) {
			return false
		}
	}
	return true
}

func inAnyPreference(r *ring.Ring, id string) bool {
	for p := range r.Partitions() {
		if slices.Contains(r.Preference(p), id) {
			return true
		}
	}
	return false
}

// converged reports whether every node sees want alive and in state
// Normal, and all compute identical preference lists.
func converged(ms []*Membership, want ...string) bool {
	for _, m := range ms {
		if !slices.Equal(ringIDs(m.Ring(), ring.StateNormal), want) {
			return false
		}
		for _, id := range want {
			if !m.Alive(id) {
				return false
			}
		}
		if !samePrefs(m.Ring(), ms[0].Ring()) {
			return false
		}
	}
	return true
}

func TestThreeNodesFormClusterAndAgree(t *testing.T) {
	h := newHarness(t)
	ms, _ := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool {
		return converged(ms, "n0", "n1", "n2")
	})

	for _, m := range ms {
		st := m.Members()
		if len(st) != 3 {
			t.Fatalf("%s: %d members", m.LocalNode().ID, len(st))
		}
		for i, s := range st {
			if s.ID != fmt.Sprintf("n%d", i) || !s.Alive || s.State != ring.StateNormal {
				t.Errorf("%s: member %d = %+v", m.LocalNode().ID, i, s)
			}
			if s.GossipAddr != ms[i].LocalNode().GossipAddr {
				t.Errorf("gossip addr of %s: %s vs %s", s.ID, s.GossipAddr, ms[i].LocalNode().GossipAddr)
			}
		}
		if a, ok := m.Addr("n2"); !ok || a != "peer-n2:1" {
			t.Errorf("Addr(n2) = %q, %v", a, ok)
		}
		if _, ok := m.Addr("nope"); ok || m.Alive("nope") {
			t.Error("unknown node has an address or is alive")
		}
		for _, p := range []int{0, 17, 63} {
			if len(m.Ring().Preference(p)) != 3 {
				t.Errorf("partition %d has preference %v", p, m.Ring().Preference(p))
			}
		}
	}
	// The ring is cached: unchanged state gives the same pointer.
	if ms[0].Ring() != ms[0].Ring() {
		t.Error("Ring() rebuilt without a change")
	}
	lr := ms[1].LocalNode()
	if lr.ID != "n1" || lr.RespAddr != "resp-n1:2" || lr.HTTPAddr != "http-n1:3" || lr.Version == 0 {
		t.Errorf("LocalNode = %+v", lr)
	}
}

func TestPersistAndRestore(t *testing.T) {
	h := newHarness(t)
	ms, cfgs := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool {
		return converged(ms, "n0", "n1", "n2")
	})
	want := ms[0].Ring()
	v0 := ms[0].LocalNode().Version
	// Persistence is write-behind for learned records; Close flushes.
	for _, m := range ms {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(cfgs[0].DataDir, "ring.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{`"n0"`, `"n1"`, `"n2"`, `"normal"`} {
		if !strings.Contains(string(b), id) {
			t.Fatalf("ring.json lacks %s:\n%s", id, b)
		}
	}

	// n0 comes back alone, with nobody to gossip with: its ring comes from
	// disk, with n1 and n2 down but still owning partitions.
	cfg := cfgs[0]
	cfg.RejoinInterval = time.Hour
	m := h.start(cfg)
	if got := ringIDs(m.Ring(), ring.StateNormal); !slices.Equal(got, []string{"n0", "n1", "n2"}) {
		t.Fatalf("restored ring members %v", got)
	}
	if !samePrefs(m.Ring(), want) {
		t.Error("restored ring differs")
	}
	if m.Alive("n1") || m.Alive("n2") || !m.Alive("n0") {
		t.Error("liveness after restore is wrong")
	}
	if a, ok := m.Addr("n2"); !ok || a != "peer-n2:1" {
		t.Errorf("restored Addr(n2) = %q, %v", a, ok)
	}
	if v := m.LocalNode().Version; v <= v0 {
		t.Errorf("own version %d did not grow past %d", v, v0)
	}
	m.Close()

	// A data dir is bound to its node and its ring config.
	other := cfgs[0]
	other.NodeID = "impostor"
	if _, err := Start(other); err == nil || !strings.Contains(err.Error(), "belongs to node") {
		t.Errorf("foreign data dir: %v", err)
	}
	changed := cfgs[0]
	changed.Ring.Partitions = 128
	if _, err := Start(changed); err == nil || !strings.Contains(err.Error(), "ring config") {
		t.Errorf("changed ring config: %v", err)
	}
}

func TestDownIsNotRemovedAndLateJoinerLearnsDownMember(t *testing.T) {
	h := newHarness(t)
	ms, cfgs := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool {
		return converged(ms, "n0", "n1", "n2")
	})
	var calls atomic.Int64
	ms[0].Subscribe(func() { calls.Add(1) })

	// Kill n2 without a graceful leave.
	if err := ms[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n2 detected down", func() bool {
		return !ms[0].Alive("n2") && !ms[1].Alive("n2")
	})
	for _, m := range ms[:2] {
		if got := ringIDs(m.Ring(), ring.StateNormal); !slices.Equal(got, []string{"n0", "n1", "n2"}) {
			t.Fatalf("ring after n2 went down: %v", got)
		}
		if !inAnyPreference(m.Ring(), "n2") {
			t.Fatal("down node lost its partitions")
		}
		st := m.Members()
		if len(st) != 3 || st[2].ID != "n2" || st[2].Alive {
			t.Fatalf("members: %+v", st)
		}
	}
	// Subscribers run later, on their own goroutine.
	waitFor(t, 5*time.Second, "subscriber called on liveness change", func() bool {
		return calls.Load() > 0
	})

	// A fourth node joins while n2 is down and still learns of it.
	n3 := h.start(h.config("n3", ms[1].LocalNode().GossipAddr))
	waitFor(t, 10*time.Second, "n3 learns the down n2", func() bool {
		_, ok := n3.Ring().Member("n2")
		return ok && len(n3.Members()) == 4
	})
	if n3.Alive("n2") {
		t.Error("n3 thinks n2 is alive")
	}
	if a, ok := n3.Addr("n2"); !ok || a != "peer-n2:1" {
		t.Errorf("n3: Addr(n2) = %q, %v", a, ok)
	}
	live := []*Membership{ms[0], ms[1], n3}
	waitFor(t, 10*time.Second, "survivors agree on a 4-member ring", func() bool {
		for _, m := range live {
			if !slices.Equal(ringIDs(m.Ring(), ring.StateNormal), []string{"n0", "n1", "n2", "n3"}) ||
				!samePrefs(m.Ring(), live[0].Ring()) {
				return false
			}
		}
		return true
	})

	// n2 restarts with the same ID, address and data dir.
	n2 := h.start(cfgs[2])
	all := append(live, n2)
	waitFor(t, 10*time.Second, "restarted n2 alive everywhere", func() bool {
		return converged(all, "n0", "n1", "n2", "n3")
	})
}

func TestSetStateLeftRemovesFromRing(t *testing.T) {
	h := newHarness(t)
	ms, _ := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool {
		return converged(ms, "n0", "n1", "n2")
	})

	// Leaving still owns partitions.
	if err := ms[1].SetState(ring.StateLeaving); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n1 leaving everywhere", func() bool {
		for _, m := range ms {
			if mb, _ := m.Ring().Member("n1"); mb.State != ring.StateLeaving || !inAnyPreference(m.Ring(), "n1") {
				return false
			}
		}
		return true
	})

	if err := ms[1].SetState(ring.StateLeft); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n1 out of every ring", func() bool {
		for _, m := range ms {
			if inAnyPreference(m.Ring(), "n1") || !samePrefs(m.Ring(), ms[0].Ring()) {
				return false
			}
		}
		return true
	})
	for _, m := range ms {
		if got := ringIDs(m.Ring(), ring.StateNormal); !slices.Equal(got, []string{"n0", "n2"}) {
			t.Errorf("%s: normal members %v", m.LocalNode().ID, got)
		}
		if mb, ok := m.Ring().Member("n1"); !ok || mb.State != ring.StateLeft {
			t.Errorf("%s: n1 = %+v, %v (Left is remembered)", m.LocalNode().ID, mb, ok)
		}
	}
	if err := ms[1].SetState(ring.State(9)); err == nil {
		t.Error("bad state accepted")
	}

	// Graceful gossip leave: peers see n2 down promptly, and it stays in
	// the ring.
	if err := ms[2].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n2 down after Leave", func() bool { return !ms[0].Alive("n2") })
	if !inAnyPreference(ms[0].Ring(), "n2") {
		t.Error("gossip leave removed n2 from the ring")
	}
}

func TestDuplicateIDIsIgnored(t *testing.T) {
	h := newHarness(t)
	ms, _ := h.cluster(2)
	waitFor(t, 10*time.Second, "two nodes converge", func() bool {
		return converged(ms, "n0", "n1")
	})
	orig := ms[1].LocalNode()

	// A second "n1" at another address joins via n0.
	cfg := h.config("n1", ms[0].LocalNode().GossipAddr)
	cfg.DataDir = filepath.Join(h.dir, "dup")
	cfg.PeerAddr = "evil:1"
	cfg.JoinTimeout = time.Second
	if dup, err := Start(cfg); err == nil {
		t.Cleanup(func() { dup.Close() })
	}
	// Give gossip a few rounds, then check n0 still has the original.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if a, _ := ms[0].Addr("n1"); a != "peer-n1:1" {
			t.Fatalf("n0 adopted the impostor: Addr(n1) = %q", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := ms[1].LocalNode(); got.GossipAddr != orig.GossipAddr || got.PeerAddr != orig.PeerAddr {
		t.Errorf("n1's own record changed: %+v", got)
	}
	if !ms[0].Alive("n1") {
		t.Error("original n1 no longer alive")
	}
}

func TestStartErrors(t *testing.T) {
	log := testLog(t)
	base := Config{NodeID: "x", BindAddr: "127.0.0.1:0", Ring: testRing, Logf: log}
	for name, mod := range map[string]func(*Config){
		"no id":       func(c *Config) { c.NodeID = "" },
		"hostname":    func(c *Config) { c.BindAddr = "localhost:0" },
		"unspecified": func(c *Config) { c.BindAddr = "0.0.0.0:0" },
		"bad weight":  func(c *Config) { c.Weight = -1 },
		"dc not in":   func(c *Config) { c.Ring.ReplicasPerDC = map[string]int{"a": 1}; c.DC = "b" },
		"huge meta":   func(c *Config) { c.HTTPAddr = strings.Repeat("h", 400) },
		"unreachable": func(c *Config) {
			c.Join = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}
			c.JoinTimeout = 300 * time.Millisecond
		},
		"long node id": func(c *Config) { c.NodeID = strings.Repeat("n", 65) },
	} {
		cfg := base
		mod(&cfg)
		if m, err := Start(cfg); err == nil {
			m.Close()
			t.Errorf("%s: Start succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}

	// A lone node with port 0 and no join starts a cluster of one.
	m, err := Start(base)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if strings.HasSuffix(m.LocalNode().GossipAddr, ":0") {
		t.Errorf("gossip addr %s", m.LocalNode().GossipAddr)
	}
	if ids := ringIDs(m.Ring(), ring.StateNormal); !slices.Equal(ids, []string{"x"}) {
		t.Errorf("ring %v", ids)
	}
}

// TestJoinerNeverPublishesPartialRing: a node that joins an existing
// cluster must never publish a ring that lacks the members it joined, not
// even for a moment after Start returns. A coordinator using a ring of the
// joiner alone would acknowledge a write with one copy.
func TestJoinerNeverPublishesPartialRing(t *testing.T) {
	h := newHarness(t)
	ms, _ := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool {
		return converged(ms, "n0", "n1", "n2")
	})
	lacks := func(r *ring.Ring, want []string) []string {
		var out []string
		for _, id := range want {
			if mb, ok := r.Member(id); !ok || mb.State != ring.StateNormal {
				out = append(out, id)
			}
		}
		return out
	}
	// Several joiners, each through another member, so that one lucky
	// schedule does not hide the window. Each must publish at least the
	// ring its join target had before the join (the target may not have
	// heard of the previous joiner yet: that is gossip's business).
	for i := range 3 {
		id := fmt.Sprintf("j%d", i)
		target := ms[i%len(ms)]
		want := ringIDs(target.Ring(), ring.StateNormal)
		m := h.start(h.config(id, target.LocalNode().GossipAddr))
		// From the moment Start returns: the ring it publishes first, and
		// every later one, holds those members.
		first := m.Ring()
		if miss := lacks(first, want); miss != nil {
			t.Errorf("%s: first ring after Start lacks %v (members %v)", id, miss, ringIDs(first, ring.StateNormal))
		}
		var subBad atomic.Value
		m.Subscribe(func() {
			if r := m.Ring(); lacks(r, want) != nil {
				subBad.CompareAndSwap(nil, fmt.Sprintf("lacks %v (members %v)", lacks(r, want), ringIDs(r, ring.StateNormal)))
			}
		})
		seen, bad := 0, 0
		var firstBad []string
		last := first
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			r := m.Ring()
			if r == last {
				continue
			}
			last = r
			seen++
			if miss := lacks(r, want); miss != nil {
				if bad++; firstBad == nil {
					firstBad = ringIDs(r, ring.StateNormal)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d later rings lacked members of %v (first such: %v)", id, bad, seen, want, firstBad)
		}
		if s := subBad.Load(); s != nil {
			t.Errorf("%s: a subscriber saw a ring that %s", id, s)
		}
		ms = append(ms, m)
	}
}

// TestJoinNeedsRingStateForOurConfig: a fresh node whose join target runs
// another ring config reaches it, but learns no members from it. It must
// not start with a ring of itself alone.
func TestJoinNeedsRingStateForOurConfig(t *testing.T) {
	h := newHarness(t)
	ms, _ := h.cluster(1)
	cfg := h.config("x", ms[0].LocalNode().GossipAddr)
	cfg.Ring.Partitions = 2 * testRing.Partitions
	cfg.JoinTimeout = 300 * time.Millisecond
	m, err := Start(cfg)
	if err == nil {
		m.Close()
		t.Fatalf("Start joined a node of another ring config; ring %v", ringIDs(m.Ring(), ring.StateNormal))
	}
	if !strings.Contains(err.Error(), "ring state") {
		t.Errorf("error does not say why: %v", err)
	}
	t.Log(err)
}

// TestRestartWithJoinTargetsDownUsesPersistedRing: a node with persisted
// peers whose join targets are all down starts from its persisted ring,
// which holds the whole cluster.
func TestRestartWithJoinTargetsDownUsesPersistedRing(t *testing.T) {
	h := newHarness(t)
	ms, cfgs := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool {
		return converged(ms, "n0", "n1", "n2")
	})
	for _, m := range ms {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := cfgs[1] // joins n0, which is down
	cfg.JoinTimeout = 300 * time.Millisecond
	cfg.RejoinInterval = time.Hour
	m := h.start(cfg)
	if got := ringIDs(m.Ring(), ring.StateNormal); !slices.Equal(got, []string{"n0", "n1", "n2"}) {
		t.Fatalf("ring after restart with its join target down: %v", got)
	}
}

// TestStreamOnJoin: with StreamOnJoin, nodes forming a cluster enter
// Normal, a new node joining an established one enters Joining (owning
// nothing) and stays Joining across a restart, and a node back on an empty
// disk under an ID the cluster knows as an owner enters Normal.
func TestStreamOnJoin(t *testing.T) {
	h := newHarness(t)
	var ms []*Membership
	var cfgs []Config
	for i := range 4 {
		cfg := h.config(fmt.Sprintf("n%d", i))
		if i > 0 {
			cfg.Join = []string{ms[0].LocalNode().GossipAddr}
		}
		cfg.StreamOnJoin = true
		cfgs = append(cfgs, cfg)
		m := h.start(cfg)
		ms = append(ms, m)
		want := ring.StateNormal
		if i == 3 { // testRing places 3 replicas: the fourth finds it established
			want = ring.StateJoining
		}
		if got := m.LocalNode().State; got != want {
			t.Fatalf("n%d entered as %v, want %v", i, got, want)
		}
		if i < 3 {
			// The next node joins through n0: n0 must know this one as
			// normal by then, or the cluster it finds is not yet
			// established (a node enters joining, then normal, and the
			// second state travels by gossip).
			waitFor(t, 10*time.Second, fmt.Sprintf("n0 sees n%d normal", i), func() bool {
				return len(ringIDs(ms[0].Ring(), ring.StateNormal)) == i+1
			})
		}
	}
	waitFor(t, 10*time.Second, "every node sees n3 joining", func() bool {
		for _, m := range ms {
			if !slices.Equal(ringIDs(m.Ring(), ring.StateJoining), []string{"n3"}) {
				return false
			}
		}
		return true
	})
	if inAnyPreference(ms[0].Ring(), "n3") {
		t.Fatal("a joining node owns partitions")
	}
	ms[3].Close()
	ms[3] = h.start(cfgs[3])
	if got := ms[3].LocalNode().State; got != ring.StateJoining {
		t.Fatalf("n3 restarted mid-join as %v, want joining", got)
	}
	if err := ms[3].SetState(ring.StateNormal); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n3 normal everywhere", func() bool { return converged(ms, "n0", "n1", "n2", "n3") })

	// n2 loses its disk and comes back under its ID: it was an owner.
	ms[2].Close()
	if err := os.RemoveAll(cfgs[2].DataDir); err != nil {
		t.Fatal(err)
	}
	cfgs[2].Join = []string{ms[0].LocalNode().GossipAddr}
	ms[2] = h.start(cfgs[2])
	if got := ms[2].LocalNode().State; got != ring.StateNormal {
		t.Fatalf("n2 back on an empty disk entered as %v, want normal", got)
	}
}
