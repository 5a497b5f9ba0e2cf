// Package testcluster runs a ringkv cluster inside one test process: real
// storage engines in temporary directories, real replica stores and
// coordinators, connected by the in-memory transport so that tests can cut,
// delay and partition links deterministically.
package testcluster

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
)

// Node is one member of the cluster.
type Node struct {
	ID    string
	DB    *storage.DB
	Store *replica.Store
	Coord *coordinator.Coordinator
	stop  io.Closer
}

// Cluster is a set of nodes sharing a ring and an in-memory network.
type Cluster struct {
	Net    *transport.Network
	Ring   *ring.Ring
	View   *coordinator.StaticCluster
	Nodes  []*Node
	byID   map[string]*Node
	tb     testing.TB
	coordO coordinator.Options
}

// Options shape a test cluster.
type Options struct {
	Nodes      int // default 5
	Replicas   int // default 3
	Partitions int // default 64
	Seed       int64
	// Coordinator options for every node (Timeout defaults to 500ms here so
	// that tests with cut links stay fast).
	Coordinator coordinator.Options
	// WrapHandler, if set, wraps each node's peer message handler, e.g. to
	// make a node behave as an older version would.
	WrapHandler func(nodeID string, h transport.Handler) transport.Handler
}

// New starts a cluster; it is closed when the test ends.
func New(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if o.Nodes == 0 {
		o.Nodes = 5
	}
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Partitions == 0 {
		o.Partitions = 64
	}
	if o.Coordinator.Timeout == 0 {
		o.Coordinator.Timeout = 500 * time.Millisecond
	}
	var members []ring.Member
	addrs := map[string]string{}
	for i := 0; i < o.Nodes; i++ {
		id := fmt.Sprintf("n%d", i+1)
		members = append(members, ring.Member{ID: id, Weight: 1, State: ring.StateNormal})
		addrs[id] = id
	}
	r, err := ring.New(ring.Config{Partitions: o.Partitions, Replicas: o.Replicas}, members)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{
		Net:    transport.NewNetworkSeed(o.Seed),
		Ring:   r,
		View:   coordinator.NewStaticCluster(r, addrs),
		byID:   map[string]*Node{},
		tb:     tb,
		coordO: o.Coordinator,
	}
	for _, m := range members {
		n := &Node{ID: m.ID}
		db, err := storage.Open(tb.TempDir(), &storage.Options{Sync: storage.SyncNone, MemTableSize: 1 << 20, MemTableIndex: true,
			MemTableFingers: true, MemTableFingerOffset: replica.TokenOffset})
		if err != nil {
			tb.Fatal(err)
		}
		n.DB = db
		n.Store = replica.New(db, m.ID)
		n.Coord = coordinator.New(m.ID, c.View, n.Store, c.Net.Client(m.ID), o.Coordinator)
		var h transport.Handler = n.Coord
		if o.WrapHandler != nil {
			h = o.WrapHandler(m.ID, h)
		}
		if n.stop, err = c.Net.Listen(m.ID, h); err != nil {
			tb.Fatal(err)
		}
		c.Nodes = append(c.Nodes, n)
		c.byID[m.ID] = n
	}
	tb.Cleanup(c.Close)
	return c
}

// Node returns the node with the given ID.
func (c *Cluster) Node(id string) *Node { return c.byID[id] }

// Replicas returns the nodes holding key, in preference order.
func (c *Cluster) Replicas(key []byte) []*Node {
	var out []*Node
	for _, id := range c.Ring.PreferenceForKey(key) {
		out = append(out, c.byID[id])
	}
	return out
}

// NonReplica returns a node that does not hold key, or nil.
func (c *Cluster) NonReplica(key []byte) *Node {
	pref := map[string]bool{}
	for _, id := range c.Ring.PreferenceForKey(key) {
		pref[id] = true
	}
	for _, n := range c.Nodes {
		if !pref[n.ID] {
			return n
		}
	}
	return nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		if n.stop != nil {
			n.stop.Close()
			n.stop = nil
		}
		if n.DB != nil {
			n.DB.Close()
			n.DB = nil
		}
	}
}
