package autoscale

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testPolicy() Policy {
	return Policy{HighRPS: 100, LowRPS: 20, HighP99: 50 * time.Millisecond,
		Window: 30 * time.Second, Cooldown: 2 * time.Minute, MinNodes: 3, MaxNodes: 5}
}

// loads returns an observation of n normal nodes each at rps with p99.
func loads(n int, rps float64, p99 time.Duration) Observation {
	o := Observation{Nodes: n, Removable: "auto-1"}
	for i := 0; i < n; i++ {
		o.Loads = append(o.Loads, NodeLoad{ID: string(rune('a' + i)), RPS: rps, P99: p99})
	}
	return o
}

// step is one observation at an offset from t0, and what must follow.
type step struct {
	at     time.Duration
	obs    Observation
	action Action
	reason string // a substring of the reason
}

func run(t *testing.T, p Policy, steps []step) {
	t.Helper()
	d := NewDecider(p)
	for i, s := range steps {
		got := d.Decide(t0.Add(s.at), s.obs)
		if got.Action != s.action || !strings.Contains(got.Reason, s.reason) {
			t.Fatalf("step %d (at %v): got %v %q, want %v with %q", i, s.at, got.Action, got.Reason, s.action, s.reason)
		}
		if got.Action == Remove && got.Node != s.obs.Removable {
			t.Fatalf("step %d: removes %q, want %q", i, got.Node, s.obs.Removable)
		}
	}
}

func TestPolicyAddsOnlyAfterTheLoadStaysHighForTheWindow(t *testing.T) {
	run(t, testPolicy(), []step{
		{0, loads(3, 150, time.Millisecond), Hold, "load high (150.0 req/s per node > 100) for 0s of the 30s window"},
		{10 * time.Second, loads(3, 150, time.Millisecond), Hold, "for 10s of the 30s window"},
		{30 * time.Second, loads(3, 150, time.Millisecond), Add, "add a node: load high (150.0 req/s per node > 100) for 30s (window 30s)"},
	})
}

func TestPolicyADipBelowTheThresholdStartsTheWindowOver(t *testing.T) {
	run(t, testPolicy(), []step{
		{0, loads(3, 150, 0), Hold, "for 0s"},
		{20 * time.Second, loads(3, 90, 0), Hold, "within the thresholds"},
		{30 * time.Second, loads(3, 150, 0), Hold, "for 0s of the 30s window"},
		{59 * time.Second, loads(3, 150, 0), Hold, "for 29s"},
		{60 * time.Second, loads(3, 150, 0), Add, "add a node"},
	})
}

func TestPolicyAnUnsettledClusterStartsTheWindowOver(t *testing.T) {
	busy := loads(3, 150, 0)
	busy.Unsettled = "n2 is down"
	run(t, testPolicy(), []step{
		{0, loads(3, 150, 0), Hold, "for 0s"},
		{20 * time.Second, busy, Hold, "hold: n2 is down"},
		{30 * time.Second, loads(3, 150, 0), Hold, "for 0s of the 30s window"},
		{60 * time.Second, loads(3, 150, 0), Add, "add a node"},
	})
}

func TestPolicyCooldownAfterAnAction(t *testing.T) {
	run(t, testPolicy(), []step{
		{0, loads(3, 150, 0), Hold, "for 0s"},
		{30 * time.Second, loads(3, 150, 0), Add, "add a node"},
		// The window starts over after an action, and the cooldown runs.
		{40 * time.Second, loads(4, 150, 0), Hold, "for 0s"},
		{70 * time.Second, loads(4, 150, 0), Hold, "cooling down: 40s since the last action, the cooldown is 2m0s"},
		{150 * time.Second, loads(4, 150, 0), Add, "add a node: load high (150.0 req/s per node > 100) for 1m50s"},
	})
}

func TestPolicyNeverAboveMaxNorBelowMin(t *testing.T) {
	run(t, testPolicy(), []step{
		{0, loads(5, 150, 0), Hold, "the cluster has 5 nodes, the maximum is 5"},
		{time.Hour, loads(5, 150, 0), Hold, "for 1h0m0s, but the cluster has 5 nodes, the maximum is 5"},
	})
	run(t, testPolicy(), []step{
		{0, loads(3, 1, 0), Hold, "load low"},
		{time.Hour, loads(3, 1, 0), Hold, "but the cluster has 3 nodes, the minimum is 3"},
	})
}

func TestPolicyRemovesAfterTheLoadStaysLow(t *testing.T) {
	run(t, testPolicy(), []step{
		{0, loads(4, 5, time.Millisecond), Hold, "load low (5.0 req/s per node < 20) for 0s of the 30s window"},
		{30 * time.Second, loads(4, 5, time.Millisecond), Remove, "decommission auto-1: load low (5.0 req/s per node < 20) for 30s"},
	})
}

func TestPolicyRemovesOnlyANodeTheOrchestratorStarted(t *testing.T) {
	o := loads(4, 5, 0)
	o.Removable = ""
	run(t, testPolicy(), []step{
		{0, o, Hold, "load low"},
		{time.Minute, o, Hold, "no node the orchestrator started is normal and alive to remove"},
	})
}

// Removing a node must not make the load high again: that would add it
// back one window later.
func TestPolicyDoesNotRemoveWhatTheLoadWouldNeedBack(t *testing.T) {
	p := testPolicy()
	p.LowRPS = 80
	run(t, p, []step{
		{0, loads(4, 79, 0), Hold, "load low"},
		// 4 × 79 = 316 req/s on 3 nodes: 105.3 per node, above 100.
		{time.Minute, loads(4, 79, 0), Hold, "on 3 nodes the rate would be 105.3/s per node, above the high threshold 100/s"},
		// The load was low all along: the window has passed.
		{2 * time.Minute, loads(4, 70, 0), Remove, "decommission auto-1: load low (70.0 req/s per node < 80) for 2m0s"},
	})
}

// Either high threshold is enough to add; every low threshold set must
// hold to remove, and the p99 judged is the slowest node's.
func TestPolicyThresholdsOnP99(t *testing.T) {
	p := testPolicy()
	p.LowP99 = 5 * time.Millisecond
	slowOne := loads(3, 10, time.Millisecond)
	slowOne.Loads[1].P99 = 80 * time.Millisecond
	run(t, p, []step{
		{0, slowOne, Hold, "load high (p99 80ms on b > 50ms)"},
		{30 * time.Second, slowOne, Add, "add a node"},
	})
	quietButSlow := loads(4, 10, 10*time.Millisecond)
	run(t, p, []step{
		{0, quietButSlow, Hold, "within the thresholds"},
		{time.Hour, quietButSlow, Hold, "within the thresholds"},
	})
	quiet := loads(4, 10, time.Millisecond)
	run(t, p, []step{
		{0, quiet, Hold, "load low (10.0 req/s per node < 20, highest p99 1ms < 5ms)"},
		{30 * time.Second, quiet, Remove, "decommission"},
	})
	p.HighRPS, p.LowRPS = 0, 0
	run(t, p, []step{
		{0, loads(3, 1e6, time.Millisecond), Hold, "load low (highest p99 1ms < 5ms)"},
	})
}

func TestPolicyWithoutALowThresholdNeverRemoves(t *testing.T) {
	p := testPolicy()
	p.LowRPS = 0
	run(t, p, []step{
		{0, loads(5, 0, 0), Hold, "within the thresholds"},
		{time.Hour, loads(5, 0, 0), Hold, "within the thresholds"},
	})
}

func TestPolicyZeroWindowActsAtOnce(t *testing.T) {
	p := testPolicy()
	p.Window, p.Cooldown = 0, 0
	run(t, p, []step{
		{0, loads(3, 150, 0), Add, "add a node"},
		{time.Second, loads(4, 150, 0), Add, "add a node"},
	})
}

func TestPolicyHoldsWithoutLoads(t *testing.T) {
	run(t, testPolicy(), []step{{0, Observation{Nodes: 3}, Hold, "no normal member reports its load"}})
}

func TestPolicyValidate(t *testing.T) {
	if err := testPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		edit func(*Policy)
		want string
	}{
		{func(p *Policy) { p.HighRPS, p.HighP99 = 0, 0 }, "set a high threshold"},
		{func(p *Policy) { p.LowRPS = 100 }, "low rate (100/s) must be below the high rate (100/s)"},
		{func(p *Policy) { p.LowP99 = time.Second }, "low p99 (1s) must be below the high p99 (50ms)"},
		{func(p *Policy) { p.MinNodes = 0 }, "at least 1"},
		{func(p *Policy) { p.MaxNodes = 2 }, "maximum node count (2) is below the minimum (3)"},
		{func(p *Policy) { p.Window = -time.Second }, "must not be negative"},
	} {
		p := testPolicy()
		c.edit(&p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", p, err, c.want)
		}
	}
}
