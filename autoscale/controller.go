package autoscale

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure a Controller. Zero fields take their defaults.
type Options struct {
	// Interval is the time between two steps of Run. Default 10 s.
	Interval time.Duration
	// JoinTimeout is how long a node the controller added may take to
	// become a normal member; past it the controller stops waiting for it
	// (it logs so and leaves the node to the operator). Default 15 min: a
	// joiner streams its share of the data first.
	JoinTimeout time.Duration
	// DryRun logs every decision and acts on none.
	DryRun bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logf receives one line per decision and per action. Default: none.
	Logf func(format string, args ...any)
}

// Controller runs the control loop: observe the cluster, decide, log the
// decision with its reason, act through the orchestrator and the cluster.
type Controller struct {
	cluster Cluster
	orch    Orchestrator
	dec     *Decider
	o       Options

	pendingAdd string    // a node added and not yet seen normal
	addedAt    time.Time // when it was added
}

// NewController returns a controller applying p.
func NewController(p Policy, c Cluster, orch Orchestrator, o Options) (*Controller, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.JoinTimeout <= 0 {
		o.JoinTimeout = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return &Controller{cluster: c, orch: orch, dec: NewDecider(p), o: o}, nil
}

// Run steps every Interval until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	for {
		c.Step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Step observes the cluster once, decides, logs the decision and acts on
// it; it returns the decision.
func (c *Controller) Step(ctx context.Context) Decision {
	now := c.o.Now()
	obs := c.observe(ctx, now)
	d := c.dec.Decide(now, obs)
	prefix := ""
	if c.o.DryRun {
		prefix = "dry run: "
	}
	c.o.Logf("autoscale: %s%s", prefix, d.Reason)
	if c.o.DryRun || d.Action == Hold {
		return d
	}
	switch d.Action {
	case Add:
		id, err := c.orch.AddNode(ctx)
		if err != nil {
			c.o.Logf("autoscale: adding a node failed (tried again after the cooldown if the load stays high): %v", err)
			return d
		}
		c.pendingAdd, c.addedAt = id, now
		c.o.Logf("autoscale: started node %s; waiting until it has joined (normal)", id)
	case Remove:
		if err := c.cluster.Decommission(ctx, d.Node); err != nil {
			c.o.Logf("autoscale: %v (tried again after the cooldown if the load stays low)", err)
			return d
		}
		c.o.Logf("autoscale: %s is leaving; it is stopped and removed once the cluster reports it left", d.Node)
	}
	return d
}

// observe reads the cluster and the orchestrator, finishes the removal of
// nodes that have left, and returns what the decider needs.
func (c *Controller) observe(ctx context.Context, now time.Time) Observation {
	members, err := c.cluster.Members(ctx)
	if err != nil {
		return Observation{Unsettled: fmt.Sprintf("cannot read the cluster: %v", err)}
	}
	nodes, err := c.orch.List(ctx)
	if err != nil {
		return Observation{Unsettled: fmt.Sprintf("cannot list the orchestrator's nodes: %v", err)}
	}
	byID := make(map[string]Member, len(members))
	for _, m := range members {
		byID[m.ID] = m
	}
	c.removeLeft(ctx, nodes, byID)

	var o Observation
	var unsettled []string
	if c.pendingAdd != "" {
		m, ok := byID[c.pendingAdd]
		switch {
		case ok && m.State == "normal" && m.Alive:
			c.o.Logf("autoscale: %s has joined: normal after %v", c.pendingAdd, now.Sub(c.addedAt).Round(time.Second))
			c.pendingAdd = ""
		case now.Sub(c.addedAt) > c.o.JoinTimeout:
			c.o.Logf("autoscale: %s did not become a normal member within %v; no longer waiting for it (see its logs; remove it by hand if it is stuck)", c.pendingAdd, c.o.JoinTimeout)
			c.pendingAdd = ""
		case !ok:
			unsettled = append(unsettled, fmt.Sprintf("%s, started %v ago, is not a member yet", c.pendingAdd, now.Sub(c.addedAt).Round(time.Second)))
		}
	}
	for _, m := range members {
		switch {
		case m.State == "joining" || m.State == "leaving":
			unsettled = append(unsettled, fmt.Sprintf("%s is %s", m.ID, m.State))
		case m.State == "normal" && !m.Alive:
			unsettled = append(unsettled, fmt.Sprintf("%s is down", m.ID))
		}
		if m.State == "joining" || m.State == "normal" {
			o.Nodes++
		}
	}
	if len(unsettled) > 0 {
		o.Unsettled = strings.Join(unsettled, "; ")
		return o
	}
	loads, errs := c.loads(ctx, members)
	if len(errs) > 0 {
		o.Unsettled = strings.Join(errs, "; ")
		return o
	}
	o.Loads = loads
	o.Removable = removable(nodes, byID)
	return o
}

// removeLeft removes the orchestrator's nodes that the cluster reports
// left: the second half of a scale-down, also when an earlier controller
// started it. A left node that is up is removed only once it says itself
// that it has handed over what it still holds (writes it took while
// leaving); one the cluster reports down is removed (a left node is
// refused if it restarts, so its data is out of reach either way).
func (c *Controller) removeLeft(ctx context.Context, nodes []Node, byID map[string]Member) {
	for _, n := range nodes {
		m, ok := byID[n.ID]
		if !ok || m.State != "left" {
			continue
		}
		if m.Alive {
			held, err := c.cluster.HandingOver(ctx, m)
			if err != nil {
				c.o.Logf("autoscale: %s has left the ring; cannot tell whether it has handed over what it holds (%v): not removed yet", n.ID, err)
				continue
			}
			if held > 0 {
				c.o.Logf("autoscale: %s has left the ring and still hands %d partitions to their owners; removed once it is done", n.ID, held)
				continue
			}
		}
		if c.o.DryRun {
			c.o.Logf("autoscale: dry run: would remove %s: it has left the ring", n.ID)
			continue
		}
		if err := c.orch.RemoveNode(ctx, n.ID); err != nil {
			c.o.Logf("autoscale: %s has left the ring, but removing it failed (tried again next step): %v", n.ID, err)
			continue
		}
		c.o.Logf("autoscale: removed %s: it had left the ring", n.ID)
	}
}

// loads asks every normal member for its load, all at once.
func (c *Controller) loads(ctx context.Context, members []Member) ([]NodeLoad, []string) {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		loads []NodeLoad
		errs  []string
	)
	for _, m := range members {
		if m.State != "normal" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := c.cluster.Load(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("cannot read the load of %s: %v", m.ID, err))
				return
			}
			loads = append(loads, l)
		}()
	}
	wg.Wait()
	sort.Slice(loads, func(i, j int) bool { return loads[i].ID < loads[j].ID })
	sort.Strings(errs)
	return loads, errs
}

// removable picks the node a scale-down removes: of the orchestrator's
// nodes that are normal, alive members, the one it started last.
func removable(nodes []Node, byID map[string]Member) string {
	var best *Node
	for i := range nodes {
		n := &nodes[i]
		if m, ok := byID[n.ID]; !ok || m.State != "normal" || !m.Alive {
			continue
		}
		if best == nil || n.Created.After(best.Created) || n.Created.Equal(best.Created) && n.ID > best.ID {
			best = n
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}
