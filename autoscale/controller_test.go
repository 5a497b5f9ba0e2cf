package autoscale

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCluster is a ring's members and their loads, in memory. A
// decommission makes the member leaving; the test says when it has left.
type fakeCluster struct {
	mu       sync.Mutex
	members  map[string]*Member
	rps      map[string]float64
	loadErr  map[string]error
	refuse   error // the answer to a decommission, if set
	decomms  []string
	handing  map[string]int // partitions a member still hands over
	readErr  error
	orchestr *fakeOrch // members appear as joining when it adds a node
}

func newFakeCluster(ids ...string) *fakeCluster {
	c := &fakeCluster{members: map[string]*Member{}, rps: map[string]float64{}, loadErr: map[string]error{}, handing: map[string]int{}}
	for _, id := range ids {
		c.members[id] = &Member{ID: id, State: "normal", Alive: true}
	}
	return c
}

func (c *fakeCluster) Members(ctx context.Context) ([]Member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr != nil {
		return nil, c.readErr
	}
	var out []Member
	for _, m := range c.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (c *fakeCluster) Load(ctx context.Context, m Member) (NodeLoad, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.loadErr[m.ID]; err != nil {
		return NodeLoad{}, err
	}
	return NodeLoad{ID: m.ID, RPS: c.rps[m.ID], P99: time.Millisecond}, nil
}

func (c *fakeCluster) HandingOver(ctx context.Context, m Member) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.handing[m.ID], nil
}

func (c *fakeCluster) Decommission(ctx context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse != nil {
		return c.refuse
	}
	m, ok := c.members[id]
	if !ok {
		return ErrUnknownNode
	}
	c.decomms = append(c.decomms, id)
	m.State = "leaving"
	return nil
}

// set changes a member's state (adding it if new).
func (c *fakeCluster) set(id, state string, alive bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[id] = &Member{ID: id, State: state, Alive: alive}
}

// load sets every normal member's rate.
func (c *fakeCluster) load(rps float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.members {
		c.rps[id] = rps
	}
}

type fakeOrch struct {
	mu      sync.Mutex
	now     func() time.Time
	nodes   []Node
	next    int
	removed []string
	addErr  error
	cluster *fakeCluster
}

func (o *fakeOrch) AddNode(ctx context.Context) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.addErr != nil {
		return "", o.addErr
	}
	o.next++
	id := fmt.Sprintf("auto-%d", o.next)
	o.nodes = append(o.nodes, Node{ID: id, Created: o.now(), Running: true})
	return id, nil
}

func (o *fakeOrch) RemoveNode(ctx context.Context, id string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, n := range o.nodes {
		if n.ID == id {
			o.nodes = append(o.nodes[:i], o.nodes[i+1:]...)
			o.removed = append(o.removed, id)
			return nil
		}
	}
	return nil
}

func (o *fakeOrch) List(ctx context.Context) ([]Node, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Node(nil), o.nodes...), nil
}

// harness drives a controller over the fakes with a fake clock and keeps
// its log.
type harness struct {
	t     *testing.T
	now   time.Time
	c     *fakeCluster
	o     *fakeOrch
	ctl   *Controller
	mu    sync.Mutex
	lines []string
}

func newHarness(t *testing.T, dry bool) *harness {
	h := &harness{t: t, now: t0, c: newFakeCluster("n1", "n2", "n3")}
	h.o = &fakeOrch{now: func() time.Time { return h.now }, cluster: h.c}
	p := Policy{HighRPS: 100, LowRPS: 20, Window: 30 * time.Second, Cooldown: time.Minute, MinNodes: 3, MaxNodes: 4}
	var err error
	h.ctl, err = NewController(p, h.c, h.o, Options{DryRun: dry, JoinTimeout: 5 * time.Minute,
		Now: func() time.Time { return h.now },
		Logf: func(f string, a ...any) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.lines = append(h.lines, fmt.Sprintf(f, a...))
		}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// step advances the clock by d, steps once and checks the decision.
func (h *harness) step(d time.Duration, action Action, reason string) {
	h.t.Helper()
	h.now = h.now.Add(d)
	got := h.ctl.Step(context.Background())
	if got.Action != action || !strings.Contains(got.Reason, reason) {
		h.t.Fatalf("at %v: %v %q, want %v with %q", h.now.Sub(t0), got.Action, got.Reason, action, reason)
	}
}

// logged checks that some log line contains s.
func (h *harness) logged(s string) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if strings.Contains(l, s) {
			return
		}
	}
	h.t.Fatalf("no log line contains %q; the log:\n%s", s, strings.Join(h.lines, "\n"))
}

// The whole cycle: high load for the window adds a node, the controller
// holds while it joins, low load for the window decommissions it, the
// controller holds while it leaves and removes it once it has left. Every
// decision is logged with its reason.
func TestControllerScalesUpThenDown(t *testing.T) {
	h := newHarness(t, false)
	h.c.load(150)
	h.step(0, Hold, "load high (150.0 req/s per node > 100) for 0s of the 30s window")
	h.step(30*time.Second, Add, "add a node")
	if len(h.o.nodes) != 1 {
		t.Fatalf("the orchestrator runs %v", h.o.nodes)
	}
	h.logged("started node auto-1; waiting until it has joined")
	h.step(5*time.Second, Hold, "auto-1, started 5s ago, is not a member yet")
	h.c.set("auto-1", "joining", true)
	h.step(5*time.Second, Hold, "auto-1 is joining")
	h.c.set("auto-1", "normal", true)
	h.c.load(150)
	h.step(5*time.Second, Hold, "the cluster has 4 nodes, the maximum is 4")
	h.logged("auto-1 has joined: normal after 15s")

	h.c.load(2)
	h.step(5*time.Second, Hold, "load low (2.0 req/s per node < 20) for 0s")
	h.step(40*time.Second, Remove, "decommission auto-1: load low (2.0 req/s per node < 20) for 40s")
	if len(h.c.decomms) != 1 || h.c.decomms[0] != "auto-1" {
		t.Fatalf("decommissioned %v", h.c.decomms)
	}
	h.logged("auto-1 is leaving; it is stopped and removed once the cluster reports it left")
	h.step(5*time.Second, Hold, "auto-1 is leaving")
	if len(h.o.removed) != 0 {
		t.Fatalf("removed %v before it left", h.o.removed)
	}
	h.c.mu.Lock()
	h.c.handing["auto-1"] = 7
	h.c.mu.Unlock()
	h.c.set("auto-1", "left", true)
	h.step(5*time.Second, Hold, "the cluster has 3 nodes, the minimum is 3")
	if len(h.o.removed) != 0 {
		t.Fatalf("removed %v while it still hands partitions over", h.o.removed)
	}
	h.logged("auto-1 has left the ring and still hands 7 partitions to their owners")
	h.c.mu.Lock()
	h.c.handing["auto-1"] = 0
	h.c.mu.Unlock()
	h.step(5*time.Second, Hold, "the cluster has 3 nodes, the minimum is 3")
	if len(h.o.removed) != 1 || len(h.o.nodes) != 0 {
		t.Fatalf("removed %v, still running %v", h.o.removed, h.o.nodes)
	}
	h.logged("removed auto-1: it had left the ring")
}

// A dry run logs the same decisions and acts on none.
func TestControllerDryRunOnlyLogs(t *testing.T) {
	h := newHarness(t, true)
	h.c.load(150)
	h.step(0, Hold, "for 0s")
	h.step(30*time.Second, Add, "add a node")
	h.logged("dry run: add a node: load high")
	if len(h.o.nodes) != 0 {
		t.Fatalf("a dry run started %v", h.o.nodes)
	}
	// It counts as taken: the next one waits for the cooldown.
	h.step(10*time.Second, Hold, "for 0s")
	h.step(30*time.Second, Hold, "cooling down")
}

// A node the controller cannot read, or a member down, holds everything.
func TestControllerHoldsWhenItCannotSeeTheLoad(t *testing.T) {
	h := newHarness(t, false)
	h.c.load(150)
	h.c.loadErr["n2"] = errors.New("connection refused")
	h.step(0, Hold, "cannot read the load of n2: connection refused")
	h.step(time.Hour, Hold, "cannot read the load of n2")
	delete(h.c.loadErr, "n2")
	h.c.set("n3", "normal", false)
	h.step(time.Second, Hold, "n3 is down")
	h.c.set("n3", "normal", true)
	h.c.load(150)
	h.step(time.Second, Hold, "for 0s of the 30s window")
	h.c.readErr = errors.New("no node answered")
	h.step(time.Second, Hold, "cannot read the cluster: no node answered")
	if len(h.o.nodes) != 0 {
		t.Fatalf("added %v", h.o.nodes)
	}
}

// A refused decommission is logged and nothing is removed; the controller
// tries again after the cooldown.
func TestControllerRefusedDecommission(t *testing.T) {
	h := newHarness(t, false)
	h.o.nodes = []Node{{ID: "auto-7", Created: t0, Running: true}}
	h.c.set("auto-7", "normal", true)
	h.c.load(1)
	h.c.refuse = fmt.Errorf("decommission auto-7: %w: without auto-7 the ring places 2 replicas", ErrRefused)
	h.step(0, Hold, "load low")
	h.step(30*time.Second, Remove, "decommission auto-7")
	h.logged("decommission refused: without auto-7 the ring places 2 replicas (tried again after the cooldown")
	h.step(10*time.Second, Hold, "for 0s")
	h.step(30*time.Second, Hold, "cooling down: 40s since the last action")
	if len(h.o.removed) != 0 {
		t.Fatalf("removed %v", h.o.removed)
	}
	h.c.refuse = nil
	h.step(20*time.Second, Remove, "decommission auto-7")
}

// A controller started after another decommissioned a node finishes the
// job: the orchestrator's node that has left is removed.
func TestControllerRemovesANodeThatLeftBeforeItStarted(t *testing.T) {
	h := newHarness(t, false)
	h.o.nodes = []Node{{ID: "auto-2", Created: t0, Running: true}}
	h.c.set("auto-2", "left", false)
	h.c.load(50)
	h.step(0, Hold, "within the thresholds")
	if len(h.o.removed) != 1 || h.o.removed[0] != "auto-2" {
		t.Fatalf("removed %v", h.o.removed)
	}
}

// Scale-down takes the node the orchestrator started last, never one it
// did not start.
func TestControllerRemovesTheNewestOfItsOwnNodes(t *testing.T) {
	h := newHarness(t, false)
	h.ctl.dec.p.MaxNodes = 6
	h.o.nodes = []Node{{ID: "auto-1", Created: t0.Add(-time.Hour)}, {ID: "auto-3", Created: t0.Add(-time.Minute)}, {ID: "auto-2", Created: t0.Add(-time.Hour)}}
	for _, n := range h.o.nodes {
		h.c.set(n.ID, "normal", true)
	}
	h.c.load(1)
	h.step(0, Hold, "load low")
	h.step(30*time.Second, Remove, "decommission auto-3")
}

// An added node that never joins is given up after JoinTimeout.
func TestControllerGivesUpOnANodeThatDoesNotJoin(t *testing.T) {
	h := newHarness(t, false)
	h.c.load(150)
	h.step(0, Hold, "for 0s")
	h.step(30*time.Second, Add, "add a node")
	h.step(time.Minute, Hold, "auto-1, started 1m0s ago, is not a member yet")
	h.step(5*time.Minute, Hold, "for 0s")
	h.logged("auto-1 did not become a normal member within 5m0s")
}

// A failed start is logged; the decision counted, so the next try waits
// for the cooldown.
func TestControllerAddFailure(t *testing.T) {
	h := newHarness(t, false)
	h.o.addErr = errors.New("no such image: ringkv:dev")
	h.c.load(150)
	h.step(0, Hold, "for 0s")
	h.step(30*time.Second, Add, "add a node")
	h.logged("adding a node failed (tried again after the cooldown if the load stays high): no such image: ringkv:dev")
	h.step(10*time.Second, Hold, "for 0s")
	h.step(30*time.Second, Hold, "cooling down")
}

// Run steps until its context ends.
func TestControllerRun(t *testing.T) {
	c := newFakeCluster("n1", "n2", "n3")
	o := &fakeOrch{now: time.Now}
	var mu sync.Mutex
	steps := 0
	ctl, err := NewController(Policy{HighRPS: 100, MinNodes: 3, MaxNodes: 3}, c, o, Options{Interval: time.Millisecond,
		Logf: func(string, ...any) { mu.Lock(); steps++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ctl.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if steps < 2 {
		t.Fatalf("%d steps", steps)
	}
}

func TestNewControllerRefusesABadPolicy(t *testing.T) {
	if _, err := NewController(Policy{}, newFakeCluster(), &fakeOrch{}, Options{}); err == nil {
		t.Fatal("accepted an empty policy")
	}
}
