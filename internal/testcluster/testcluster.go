// Package testcluster runs a ringkv cluster inside one test process: real
// storage engines, real replica stores and coordinators, connected by the
// in-memory transport so that tests can cut, delay and partition links
// deterministically.
//
// Beyond the network faults of transport.Network, a cluster can kill a node
// (Kill: it stops serving at once and its engine is abandoned without a
// clean shutdown), restart it on what its disk kept (Restart) or on an
// empty disk (RestartWiped), and skew each node's clock (SetClockSkew). With
// Options.Crashable every node's engine runs on its own strict in-memory
// filesystem (storage/vfs.NewStrictMem) under the server's default sync
// mode, so a Kill loses exactly what a power cut would: everything not yet
// fsynced. Without it, engines live in temporary directories with sync mode
// none, and a Kill closes the engine (a process crash that loses nothing
// written).
//
// Nodes may be replaced while clients run: code that runs concurrently with
// Kill or Restart must reach a node's coordinator and store through
// Cluster.Coord and Cluster.StoreOf, not through the Node fields.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/transport"
)

// ErrNodeDown is returned by Coord and StoreOf for a killed node. A request
// refused with it was never sent anywhere.
var ErrNodeDown = errors.New("testcluster: node is down")

// Node is one member of the cluster. Its DB, Store and Coord fields are
// those of its current incarnation; they change on Restart (see the package
// doc for concurrent use).
type Node struct {
	ID    string
	DB    *storage.DB
	Store *replica.Store
	Coord *coordinator.Coordinator
	// Hints is the node's hinted-handoff service (Options.Handoff only).
	Hints *handoff.Service
	// AE is the node's anti-entropy service (Options.AntiEntropy only).
	AE *antientropy.Service
	// RB is the node's rebalance service (Options.Rebalance only).
	RB *rebalance.Service

	stop   io.Closer
	tr     transport.Transport
	fs     *vfs.MemFS // Crashable only
	dir    string     // otherwise
	down   bool
	wipes  int // RestartWiped calls so far
	starts int // incarnations started so far
	skew   atomic.Int64
}

// Now is the node's clock: the wall clock plus its skew.
func (n *Node) Now() time.Time { return time.Now().Add(time.Duration(n.skew.Load())) }

// Cluster is a set of nodes sharing a ring and an in-memory network.
type Cluster struct {
	Net *transport.Network
	// Ring is the ring the cluster started with; View.Ring() is the
	// current one (SetState changes it).
	Ring  *ring.Ring
	View  *coordinator.StaticCluster
	Nodes []*Node

	mu sync.Mutex // guards the Node fields that Kill and Restart change
	// ringMu serialises changes of the shared ring (setState).
	ringMu sync.Mutex
	byID   map[string]*Node
	tb     testing.TB
	o      Options
}

// StoreOpener makes a node's replica store over a freshly opened engine.
// wiped is true when the node restarts on an empty directory after having
// held data (RestartWiped); incarnation counts the node's starts from 1.
type StoreOpener func(nodeID string, db *storage.DB, wiped bool, incarnation int) (*replica.Store, error)

// Options shape a test cluster.
type Options struct {
	Nodes      int // default 5
	Replicas   int // default 3
	Partitions int // default 64
	Seed       int64
	// Coordinator options for every node (Timeout defaults to 500ms here so
	// that tests with cut links stay fast). Now defaults to the node's
	// skewable clock (Node.Now).
	Coordinator coordinator.Options
	// NodeOptions, if set, adjusts one node's coordinator options (a
	// per-node clock, say) each time the node starts.
	NodeOptions func(nodeID string, o *coordinator.Options)
	// WrapHandler, if set, wraps each node's peer message handler, e.g. to
	// make a node behave as an older version would, or to plant a bug.
	WrapHandler func(nodeID string, h transport.Handler) transport.Handler
	// OpenStore, if set, replaces DefaultStoreOpener.
	OpenStore StoreOpener
	// Handoff, if set, gives every node hinted handoff with these options:
	// hints kept in its engine, delivered through its coordinator to the
	// nodes View marks alive. The service stops when the node is killed.
	Handoff *handoff.Options
	// AntiEntropy, if set, gives every node anti-entropy with these
	// options: hash trees kept current on every write, exchanged with the
	// other replicas of each partition that View marks alive. The service
	// stops when the node is killed.
	AntiEntropy *antientropy.Options
	// Rebalance, if set (with AntiEntropy), gives every node the rebalance
	// service with these options: ring changes (Join, Decommission) move
	// partitions as they do between servers; the shared View stands in for
	// gossip, so every node sees a change at once.
	Rebalance *rebalance.Options
	// WrapSyncer, if set, wraps each node's anti-entropy as its rebalance
	// service uses it (to plant a bug in the moves).
	WrapSyncer func(c *Cluster, nodeID string, st *replica.Store, s rebalance.Syncer) rebalance.Syncer
	// Spare is how many of the last nodes run without being ring members,
	// until Join adds them.
	Spare int
	// Joining is how many of the last nodes start in ring.StateJoining:
	// they own nothing in the ring, but are its pending owners (writes go
	// to them too) until the test marks them normal (Cluster.SetState).
	Joining int
	// Crashable puts each node's engine on a strict in-memory filesystem
	// with the server's default sync mode (batch), so that Kill drops
	// exactly the unsynced data. See the package doc.
	Crashable bool
}

// DefaultStoreOpener opens a node's store the way the server does:
// replica.Open, which keeps the node's incarnation across a clean Close and
// mints a new one for a new directory or after a crash (Kill), so that a
// node restarted on a wiped directory never reuses dot counters.
func DefaultStoreOpener(nodeID string, db *storage.DB, wiped bool, incarnation int) (*replica.Store, error) {
	return replica.Open(db, nodeID)
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
	if o.OpenStore == nil {
		o.OpenStore = DefaultStoreOpener
	}
	var members []ring.Member
	addrs := map[string]string{}
	var ids []string
	for i := 0; i < o.Nodes; i++ {
		id := fmt.Sprintf("n%d", i+1)
		ids = append(ids, id)
		addrs[id] = id
		if i >= o.Nodes-o.Spare {
			continue
		}
		st := ring.StateNormal
		if i >= o.Nodes-o.Spare-o.Joining {
			st = ring.StateJoining
		}
		members = append(members, ring.Member{ID: id, Weight: 1, State: st})
	}
	r, err := ring.New(ring.Config{Partitions: o.Partitions, Replicas: o.Replicas}, members)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{
		Net:  transport.NewNetworkSeed(o.Seed),
		Ring: r,
		View: coordinator.NewStaticCluster(r, addrs),
		byID: map[string]*Node{},
		tb:   tb,
		o:    o,
	}
	tb.Cleanup(c.Close)
	for _, id := range ids {
		n := &Node{ID: id}
		if o.Crashable {
			n.fs = vfs.NewStrictMem()
		} else {
			n.dir = tb.TempDir()
		}
		c.Nodes = append(c.Nodes, n)
		c.byID[id] = n
		if err := c.start(n, false); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// start opens n's engine and store and starts serving. Called with c.mu
// held, or before the cluster is shared.
func (c *Cluster) start(n *Node, wiped bool) error {
	so := &storage.Options{Sync: storage.SyncNone, MemTableSize: 1 << 20, MemTableIndex: true,
		MemTableFingers: true, MemTableFingerOffset: replica.TokenOffset}
	dir := n.dir
	if c.o.Crashable {
		so.FS, so.Sync, dir = n.fs, storage.SyncBatch, "db"
	}
	db, err := storage.Open(dir, so)
	if err != nil {
		return fmt.Errorf("node %s: open engine: %w", n.ID, err)
	}
	n.starts++
	st, err := c.o.OpenStore(n.ID, db, wiped, n.starts)
	if err != nil {
		db.Close()
		return fmt.Errorf("node %s: open store: %w", n.ID, err)
	}
	co := c.o.Coordinator
	co.Now = n.Now
	if c.o.Coordinator.Now != nil {
		co.Now = c.o.Coordinator.Now
	}
	if c.o.NodeOptions != nil {
		c.o.NodeOptions(n.ID, &co)
	}
	var hints *handoff.Service
	if c.o.Handoff != nil {
		if hints, err = handoff.Open(st, *c.o.Handoff); err != nil {
			db.Close()
			return fmt.Errorf("node %s: open hints: %w", n.ID, err)
		}
		co.Hints = hints
	}
	tr := c.Net.Client(n.ID)
	var ae *antientropy.Service
	if c.o.AntiEntropy != nil {
		// Before the coordinator: the trees must see every write.
		if ae, err = antientropy.New(n.ID, st, c.View, tr, *c.o.AntiEntropy); err != nil {
			db.Close()
			return fmt.Errorf("node %s: anti-entropy: %w", n.ID, err)
		}
	}
	coord := coordinator.New(n.ID, c.View, st, tr, co)
	if hints != nil {
		hints.Start(coord, func(id string) bool {
			if m, ok := c.View.Ring().Member(id); ok && m.State == ring.StateLeft {
				return true // delivered to the key's owners
			}
			return c.View.Alive(id)
		})
	}
	var rb *rebalance.Service
	if ae != nil && c.o.Rebalance != nil {
		var sy rebalance.Syncer = ae
		if c.o.WrapSyncer != nil {
			sy = c.o.WrapSyncer(c, n.ID, st, ae)
		}
		rb = rebalance.New(n.ID, nodeView{c, n.ID}, sy, tr, *c.o.Rebalance)
	}
	var h transport.Handler = coord
	if ae != nil {
		h = transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
			if antientropy.Owns(kind) {
				return ae.Handle(ctx, from, kind, payload)
			}
			if rebalance.Owns(kind) {
				return rb.Handle(c.View.Ring(), kind, payload)
			}
			return coord.Handle(ctx, from, kind, payload)
		})
	}
	if c.o.WrapHandler != nil {
		h = c.o.WrapHandler(n.ID, h)
	}
	stop, err := c.Net.Listen(n.ID, h)
	if err != nil {
		if hints != nil {
			hints.Close()
		}
		tr.Close()
		db.Close()
		return fmt.Errorf("node %s: listen: %w", n.ID, err)
	}
	n.DB, n.Store, n.Coord, n.Hints, n.AE, n.RB, n.stop, n.tr, n.down = db, st, coord, hints, ae, rb, stop, tr, false
	if ae != nil {
		ae.Start()
	}
	if rb != nil {
		rb.Start()
	}
	return nil
}

// SetState changes a member's ring state in the cluster's shared view
// (every node sees the new ring at once) and returns the new ring.
func (c *Cluster) SetState(id string, st ring.State) *ring.Ring {
	c.tb.Helper()
	r, err := c.setState(id, st)
	if err != nil {
		c.tb.Fatal(err)
	}
	return r
}

// Join adds node id (one of Options.Spare) to the ring as joining; with
// Options.Rebalance it streams its partitions and becomes normal.
func (c *Cluster) Join(id string) error {
	_, err := c.setState(id, ring.StateJoining)
	return err
}

// Decommission marks member id leaving, as `ringkv decommission` (or
// removenode, for a node that is down) does; with Options.Rebalance its
// partitions move to their next owners and it becomes left.
func (c *Cluster) Decommission(id string) error {
	_, err := c.setState(id, ring.StateLeaving)
	return err
}

// SetReplication starts a change of the cluster's replication to rp, as
// `ringkv set-replicas` does; with Options.Rebalance the extra replicas
// are streamed and the change completed.
func (c *Cluster) SetReplication(rp ring.Replication) error {
	return c.setConfig(func(cfg *ring.Config) error {
		cfg.Next = &rp
		return nil
	})
}

func (c *Cluster) finishReplication() error {
	return c.setConfig(func(cfg *ring.Config) error {
		if cfg.Next == nil {
			return errors.New("testcluster: no replication change in progress")
		}
		*cfg = cfg.WithReplication(*cfg.Next)
		return nil
	})
}

func (c *Cluster) setConfig(change func(*ring.Config) error) error {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	cur := c.View.Ring()
	cfg := cur.Config()
	if err := change(&cfg); err != nil {
		return err
	}
	r, err := ring.New(cfg, cur.Members())
	if err != nil {
		return err
	}
	c.View.SetRing(r)
	return nil
}

// setState changes (or adds) member id's state in the shared view. Like
// membership, it never takes a member back from leaving or left.
func (c *Cluster) setState(id string, st ring.State) (*ring.Ring, error) {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	cur := c.View.Ring()
	ms := cur.Members()
	found := false
	for i := range ms {
		if ms[i].ID == id {
			if ms[i].State >= ring.StateLeaving && st < ms[i].State {
				return cur, fmt.Errorf("testcluster: %s is %v: it cannot become %v", id, ms[i].State, st)
			}
			ms[i].State, found = st, true
		}
	}
	if !found {
		if c.byID[id] == nil {
			return cur, fmt.Errorf("testcluster: no node %q", id)
		}
		ms = append(ms, ring.Member{ID: id, Weight: 1, State: st})
	}
	r, err := ring.New(cur.Config(), ms)
	if err != nil {
		return cur, err
	}
	c.View.SetRing(r)
	return r, nil
}

// nodeView is one node's view of the cluster for its rebalance service:
// the shared View, and state changes applied to it.
type nodeView struct {
	c    *Cluster
	self string
}

func (v nodeView) Ring() *ring.Ring              { return v.c.View.Ring() }
func (v nodeView) Addr(id string) (string, bool) { return v.c.View.Addr(id) }
func (v nodeView) Alive(id string) bool          { return v.c.View.Alive(id) }
func (v nodeView) SetState(st ring.State) error  { _, err := v.c.setState(v.self, st); return err }
func (v nodeView) FinishReplication() error      { return v.c.finishReplication() }
func (v nodeView) SetMemberState(id string, st ring.State) error {
	_, err := v.c.setState(id, st)
	return err
}

// Node returns the node with the given ID.
func (c *Cluster) Node(id string) *Node { return c.byID[id] }

// IDs returns the node IDs in order.
func (c *Cluster) IDs() []string {
	ids := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		ids[i] = n.ID
	}
	return ids
}

// Coord returns the current coordinator of node id, or ErrNodeDown.
func (c *Cluster) Coord(id string) (*coordinator.Coordinator, error) {
	coord, _, err := c.running(id)
	return coord, err
}

// StoreOf returns the current replica store of node id, or ErrNodeDown.
func (c *Cluster) StoreOf(id string) (*replica.Store, error) {
	_, store, err := c.running(id)
	return store, err
}

// running returns node id's current coordinator and store, or ErrNodeDown
// while it is killed.
func (c *Cluster) running(id string) (*coordinator.Coordinator, *replica.Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.byID[id]
	if n == nil {
		return nil, nil, fmt.Errorf("testcluster: no node %q", id)
	}
	if n.down {
		return nil, nil, fmt.Errorf("%w: %s", ErrNodeDown, id)
	}
	return n.Coord, n.Store, nil
}

// IsDown reports whether id is killed (not restarted yet).
func (c *Cluster) IsDown(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id].down
}

// Wipes returns how many times id was restarted on an empty directory.
func (c *Cluster) Wipes(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id].wipes
}

// Kill stops node id without a clean shutdown: it stops answering (its
// in-flight handlers are cancelled, calls to it fail), its outgoing calls
// fail, and its engine is abandoned. With Options.Crashable, what it had
// not fsynced is lost; otherwise the engine is closed (nothing is lost, as
// when only the process dies). The failure detector's view (View) is not
// changed: mark the node down there to model a detected failure. Killing a
// dead node does nothing.
func (c *Cluster) Kill(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.byID[id]
	if n == nil || n.down {
		return
	}
	c.killLocked(n)
}

func (c *Cluster) killLocked(n *Node) {
	n.down = true
	n.stop.Close()
	n.tr.Close()
	if n.Hints != nil {
		n.Hints.Close()
	}
	if n.RB != nil {
		n.RB.Close() // before anti-entropy: it streams through it
	}
	if n.AE != nil {
		n.AE.Close()
	}
	if c.o.Crashable {
		// The disk as a power cut leaves it; the old engine keeps the old
		// filesystem object to itself while it winds down.
		crashed := n.fs.CrashClone()
		n.DB.Close()
		n.fs = crashed
	} else {
		n.DB.Close()
	}
}

// Restart starts a killed node again on what its disk kept. It fails the
// test if the engine does not open (recovery must succeed after a crash).
func (c *Cluster) Restart(id string) {
	c.restart(id, false)
}

// RestartWiped kills node id if it is running, then starts it on an empty
// directory, as after a disk replacement.
func (c *Cluster) RestartWiped(id string) {
	c.restart(id, true)
}

func (c *Cluster) restart(id string, wipe bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.byID[id]
	if n == nil {
		c.tb.Fatalf("testcluster: no node %q", id)
	}
	if !n.down {
		if !wipe {
			return
		}
		c.killLocked(n)
	}
	if wipe {
		n.wipes++
		if c.o.Crashable {
			n.fs = vfs.NewStrictMem()
		} else {
			n.dir = c.tb.TempDir()
		}
	}
	if err := c.start(n, wipe); err != nil {
		c.tb.Errorf("testcluster: restart: %v", err)
	}
}

// SetClockSkew sets how far node id's clock (Node.Now, the default
// coordinator clock) runs ahead of the wall clock (negative: behind).
func (c *Cluster) SetClockSkew(id string, d time.Duration) {
	c.byID[id].skew.Store(int64(d))
}

// Heal ends every fault: it heals the network, restarts every killed node
// on its disk, marks every node alive and resets clock skew.
func (c *Cluster) Heal() {
	c.Net.Heal()
	for _, n := range c.Nodes {
		c.Restart(n.ID)
		c.View.SetAlive(n.ID, true)
		n.skew.Store(0)
	}
}

// Replicas returns the nodes holding key, in preference order.
func (c *Cluster) Replicas(key []byte) []*Node {
	var out []*Node
	for _, id := range c.View.Ring().PreferenceForKey(key) {
		out = append(out, c.byID[id])
	}
	return out
}

// NonReplica returns a node that does not hold key, or nil.
func (c *Cluster) NonReplica(key []byte) *Node {
	pref := map[string]bool{}
	for _, id := range c.View.Ring().PreferenceForKey(key) {
		pref[id] = true
	}
	for _, n := range c.Nodes {
		if !pref[n.ID] {
			return n
		}
	}
	return nil
}

// Close stops every node, shutting down cleanly those still running.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		if n.down || n.stop == nil {
			continue
		}
		n.down = true
		n.stop.Close()
		n.tr.Close()
		if n.Hints != nil {
			n.Hints.Close()
		}
		if n.RB != nil {
			n.RB.Close()
		}
		if n.AE != nil {
			n.AE.Close()
		}
		n.Store.Close() // records the clean shutdown
		n.DB.Close()
	}
}
