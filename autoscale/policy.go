package autoscale

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Policy says when to scale. A threshold of zero is not used. The load is
// high when the mean request rate per node is above HighRPS or the highest
// p99 of any node is above HighP99 (either is enough); it is low when every
// low threshold set holds: the mean rate below LowRPS and the highest p99
// below LowP99. With no low threshold the cluster never shrinks.
type Policy struct {
	HighRPS, LowRPS float64       // requests per second per node
	HighP99, LowP99 time.Duration // the slowest node's p99
	// Window is how long the load must stay high (or low) before a node
	// is added (or removed); a settled cluster's every observation in
	// that time must agree.
	Window time.Duration
	// Cooldown is the least time between two actions: a new node needs
	// time to take its share, and clients to spread onto it.
	Cooldown time.Duration
	// MinNodes and MaxNodes bound the members that count (joining or
	// normal). MinNodes is at least 1; keep it at N or more, as the
	// cluster refuses a decommission that would leave fewer than N.
	MinNodes, MaxNodes int
}

// Validate says what is wrong with p, if anything.
func (p Policy) Validate() error {
	var errs []string
	if p.HighRPS < 0 || p.LowRPS < 0 || p.HighP99 < 0 || p.LowP99 < 0 || p.Window < 0 || p.Cooldown < 0 {
		errs = append(errs, "thresholds, window and cooldown must not be negative")
	}
	if p.HighRPS == 0 && p.HighP99 == 0 {
		errs = append(errs, "set a high threshold (requests per second per node or p99): without one the cluster never grows")
	}
	if p.HighRPS > 0 && p.LowRPS >= p.HighRPS {
		errs = append(errs, fmt.Sprintf("the low rate (%g/s) must be below the high rate (%g/s)", p.LowRPS, p.HighRPS))
	}
	if p.HighP99 > 0 && p.LowP99 >= p.HighP99 {
		errs = append(errs, fmt.Sprintf("the low p99 (%v) must be below the high p99 (%v)", p.LowP99, p.HighP99))
	}
	if p.MinNodes < 1 {
		errs = append(errs, "the minimum node count must be at least 1")
	}
	if p.MaxNodes < p.MinNodes {
		errs = append(errs, fmt.Sprintf("the maximum node count (%d) is below the minimum (%d)", p.MaxNodes, p.MinNodes))
	}
	if len(errs) > 0 {
		return errors.New("autoscale policy: " + strings.Join(errs, "; "))
	}
	return nil
}

// NodeLoad is one node's load, as it reports it (GET /v1/cluster "load").
type NodeLoad struct {
	ID  string
	RPS float64       // client requests per second over its window
	P99 time.Duration // their 99th-percentile latency
}

// Observation is what the decider sees of the cluster at one time.
type Observation struct {
	// Nodes is the members that count toward MinNodes and MaxNodes: those
	// joining or normal.
	Nodes int
	// Loads is the load of every normal member.
	Loads []NodeLoad
	// Unsettled, when not empty, says why the load cannot be judged now
	// (a member joining, leaving or down, a node just added, a load that
	// could not be read): the decider holds and its windows start over.
	Unsettled string
	// Removable is the node a scale-down would decommission (one the
	// orchestrator started, normal and alive); empty if there is none.
	Removable string
}

// Action is what a decision asks for.
type Action int

// The actions.
const (
	Hold Action = iota
	Add
	Remove
)

func (a Action) String() string {
	switch a {
	case Add:
		return "add"
	case Remove:
		return "remove"
	}
	return "hold"
}

// Decision is the decider's answer: an action, the node to remove (for
// Remove), and the reason in words, for the log.
type Decision struct {
	Action Action
	Node   string
	Reason string
}

// Decider applies a Policy to successive observations. It is a pure state
// machine: the caller passes the time, so tests drive it with a fake clock.
// Not safe for concurrent use.
type Decider struct {
	p          Policy
	highSince  time.Time // start of the current high stretch (zero: not high)
	lowSince   time.Time // likewise for low
	lastAction time.Time // zero: none yet
}

// NewDecider returns a decider for p (which should be valid).
func NewDecider(p Policy) *Decider { return &Decider{p: p} }

// Decide returns the decision for o seen at now. An Add or Remove counts
// as taken: the cooldown starts at now and both windows start over, even
// if the caller then fails to act (it retries after the cooldown).
func (d *Decider) Decide(now time.Time, o Observation) Decision {
	if o.Unsettled != "" {
		d.highSince, d.lowSince = time.Time{}, time.Time{}
		return Decision{Reason: "hold: " + o.Unsettled + "; the windows start over once the cluster is settled"}
	}
	if len(o.Loads) == 0 {
		d.highSince, d.lowSince = time.Time{}, time.Time{}
		return Decision{Reason: "hold: no normal member reports its load"}
	}
	l := summarize(o.Loads)
	if high, why := d.high(l); high {
		d.lowSince = time.Time{}
		if d.highSince.IsZero() {
			d.highSince = now
		}
		return d.act(now, d.highSince, Add, "", fmt.Sprintf("load high (%s)", why), d.addBlocked(o))
	}
	d.highSince = time.Time{}
	if low, why := d.low(l); low {
		if d.lowSince.IsZero() {
			d.lowSince = now
		}
		return d.act(now, d.lowSince, Remove, o.Removable, fmt.Sprintf("load low (%s)", why), d.removeBlocked(o, l))
	}
	d.lowSince = time.Time{}
	return Decision{Reason: fmt.Sprintf("hold: load within the thresholds (%s)", l)}
}

// act decides on an action whose condition has held since since, unless
// blocked says why it cannot be taken.
func (d *Decider) act(now, since time.Time, a Action, node, cond, blocked string) Decision {
	held := now.Sub(since)
	switch {
	case blocked != "":
		return Decision{Reason: fmt.Sprintf("hold: %s for %v, but %s", cond, held.Round(time.Second), blocked)}
	case held < d.p.Window:
		return Decision{Reason: fmt.Sprintf("hold: %s for %v of the %v window", cond, held.Round(time.Second), d.p.Window)}
	case !d.lastAction.IsZero() && now.Sub(d.lastAction) < d.p.Cooldown:
		return Decision{Reason: fmt.Sprintf("hold: %s for %v, but cooling down: %v since the last action, the cooldown is %v",
			cond, held.Round(time.Second), now.Sub(d.lastAction).Round(time.Second), d.p.Cooldown)}
	}
	d.lastAction = now
	d.highSince, d.lowSince = time.Time{}, time.Time{}
	what := "add a node"
	if a == Remove {
		what = "decommission " + node
	}
	return Decision{Action: a, Node: node, Reason: fmt.Sprintf("%s: %s for %v (window %v)", what, cond, held.Round(time.Second), d.p.Window)}
}

func (d *Decider) addBlocked(o Observation) string {
	if o.Nodes >= d.p.MaxNodes {
		return fmt.Sprintf("the cluster has %d nodes, the maximum is %d", o.Nodes, d.p.MaxNodes)
	}
	return ""
}

func (d *Decider) removeBlocked(o Observation, l summary) string {
	switch {
	case o.Nodes <= d.p.MinNodes:
		return fmt.Sprintf("the cluster has %d nodes, the minimum is %d", o.Nodes, d.p.MinNodes)
	case o.Removable == "":
		return "no node the orchestrator started is normal and alive to remove"
	}
	// The same load on one node fewer must not be high, or the next
	// window would add it back.
	if d.p.HighRPS > 0 {
		if after := l.totalRPS / float64(o.Nodes-1); after > d.p.HighRPS {
			return fmt.Sprintf("on %d nodes the rate would be %.1f/s per node, above the high threshold %g/s", o.Nodes-1, after, d.p.HighRPS)
		}
	}
	return ""
}

// summary is the cluster's load as the policy judges it.
type summary struct {
	meanRPS, totalRPS float64
	maxP99            time.Duration
	slowest           string // the node with maxP99
}

func summarize(ls []NodeLoad) summary {
	var s summary
	for _, l := range ls {
		s.totalRPS += l.RPS
		if l.P99 > s.maxP99 || s.slowest == "" {
			s.maxP99, s.slowest = l.P99, l.ID
		}
	}
	s.meanRPS = s.totalRPS / float64(len(ls))
	return s
}

func (s summary) String() string {
	return fmt.Sprintf("%.1f req/s per node, highest p99 %v on %s", s.meanRPS, s.maxP99, s.slowest)
}

func (d *Decider) high(s summary) (bool, string) {
	var why []string
	if d.p.HighRPS > 0 && s.meanRPS > d.p.HighRPS {
		why = append(why, fmt.Sprintf("%.1f req/s per node > %g", s.meanRPS, d.p.HighRPS))
	}
	if d.p.HighP99 > 0 && s.maxP99 > d.p.HighP99 {
		why = append(why, fmt.Sprintf("p99 %v on %s > %v", s.maxP99, s.slowest, d.p.HighP99))
	}
	return len(why) > 0, strings.Join(why, ", ")
}

func (d *Decider) low(s summary) (bool, string) {
	if d.p.LowRPS == 0 && d.p.LowP99 == 0 {
		return false, ""
	}
	var why []string
	if d.p.LowRPS > 0 {
		if s.meanRPS >= d.p.LowRPS {
			return false, ""
		}
		why = append(why, fmt.Sprintf("%.1f req/s per node < %g", s.meanRPS, d.p.LowRPS))
	}
	if d.p.LowP99 > 0 {
		if s.maxP99 >= d.p.LowP99 {
			return false, ""
		}
		why = append(why, fmt.Sprintf("highest p99 %v < %v", s.maxP99, d.p.LowP99))
	}
	return true, strings.Join(why, ", ")
}
