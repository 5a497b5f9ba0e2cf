package testcluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/transport"
)

// DC describes one datacenter of a multi-datacenter cluster: its name, how
// many nodes it has and how many replicas of every key it holds (its
// ReplicasPerDC count).
type DC struct {
	Name     string
	Nodes    int
	Replicas int
}

// NewMultiDC starts a cluster spread over datacenters, as New does (o's
// Nodes and Replicas are ignored: dcs give them). Nodes are named n1, n2,
// ... in the order of dcs, and the ring places ReplicasPerDC replicas in
// each. The failure detector's view (View) is shared by all nodes, as in
// New: a cut between datacenters (Net.Partition of DCNodes) leaves every
// node marked alive unless the test marks some down. Under ReplicasPerDC
// that picks the same targets as a per-side view would, since a down
// primary's fallbacks come from its own datacenter, which is then out of
// reach too.
func NewMultiDC(tb testing.TB, o Options, dcs ...DC) *Cluster {
	tb.Helper()
	if o.Partitions == 0 {
		o.Partitions = 64
	}
	if o.Coordinator.Timeout == 0 {
		o.Coordinator.Timeout = 500 * time.Millisecond
	}
	if o.OpenStore == nil {
		o.OpenStore = DefaultStoreOpener
	}
	perDC := map[string]int{}
	var members []ring.Member
	addrs := map[string]string{}
	for _, dc := range dcs {
		perDC[dc.Name] = dc.Replicas
		for range dc.Nodes {
			id := fmt.Sprintf("n%d", len(members)+1)
			members = append(members, ring.Member{ID: id, Weight: 1, DC: dc.Name, State: ring.StateNormal})
			addrs[id] = id
		}
	}
	o.Nodes = len(members)
	r, err := ring.New(ring.Config{Partitions: o.Partitions, ReplicasPerDC: perDC}, members)
	if err != nil {
		tb.Fatal(err)
	}
	o.Replicas = r.Replicas()
	c := &Cluster{
		Net:  transport.NewNetworkSeed(o.Seed),
		Ring: r,
		View: coordinator.NewStaticCluster(r, addrs),
		byID: map[string]*Node{},
		tb:   tb,
		o:    o,
	}
	tb.Cleanup(c.Close)
	for _, m := range members {
		n := &Node{ID: m.ID}
		if o.Crashable {
			n.fs = vfs.NewStrictMem()
		} else {
			n.dir = tb.TempDir()
		}
		c.Nodes = append(c.Nodes, n)
		c.byID[m.ID] = n
		if err := c.start(n, false); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// DCNodes returns the IDs of the nodes of datacenter dc, in order.
func (c *Cluster) DCNodes(dc string) []string {
	var ids []string
	for _, n := range c.Nodes {
		if c.Ring.DC(n.ID) == dc {
			ids = append(ids, n.ID)
		}
	}
	return ids
}
