package antientropy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// staticPeers is a fixed ring on the in-memory network, with a settable
// liveness.
type staticPeers struct {
	ring *ring.Ring
	mu   sync.Mutex
	down map[string]bool
}

func (sp *staticPeers) Ring() *ring.Ring { return sp.ring }
func (sp *staticPeers) Addr(id string) (string, bool) {
	_, ok := sp.ring.Member(id)
	return id, ok
}
func (sp *staticPeers) Alive(id string) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return !sp.down[id]
}

type testNode struct {
	id    string
	db    *storage.DB
	store *replica.Store
	ae    *Service
}

// newNodes opens a store per node of a ring of n nodes with N = n (every
// node replicates every partition), wires anti-entropy over an in-memory
// network, and calls fill on each store before its service exists (data
// that the initial build must find). Services are not started.
func newNodes(t *testing.T, n, partitions int, o Options, fill func(i int, s *replica.Store)) ([]*testNode, *staticPeers) {
	t.Helper()
	return newNodesN(t, n, n, partitions, o, fill)
}

// newNodesN is newNodes with N = replicas.
func newNodesN(t *testing.T, n, replicas, partitions int, o Options, fill func(i int, s *replica.Store)) ([]*testNode, *staticPeers) {
	t.Helper()
	var members []ring.Member
	for i := range n {
		members = append(members, ring.Member{ID: fmt.Sprintf("n%d", i+1), State: ring.StateNormal})
	}
	rg, err := ring.New(ring.Config{Partitions: partitions, Replicas: replicas}, members)
	if err != nil {
		t.Fatal(err)
	}
	peers := &staticPeers{ring: rg, down: map[string]bool{}}
	net := transport.NewNetwork()
	var nodes []*testNode
	for i, m := range members {
		db, err := storage.Open(t.TempDir(), &storage.Options{Sync: storage.SyncNone})
		if err != nil {
			t.Fatal(err)
		}
		st := replica.New(db, version.Actor(m.ID, uint64(i+1)))
		if fill != nil {
			fill(i, st)
		}
		ae, err := New(m.ID, st, peers, net.Client(m.ID), o)
		if err != nil {
			t.Fatal(err)
		}
		stop, err := net.Listen(m.ID, transport.HandlerFunc(ae.Handle))
		if err != nil {
			t.Fatal(err)
		}
		node := &testNode{id: m.ID, db: db, store: st, ae: ae}
		nodes = append(nodes, node)
		t.Cleanup(func() {
			ae.Close()
			stop.Close()
			db.Close()
		})
	}
	return nodes, peers
}

// contents is a store's every key and encoded object.
func contents(t *testing.T, s *replica.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.Scan(0, ^uint64(0), func(e replica.Entry) bool {
		out[string(e.Key)] = string(e.Object.Encode(nil))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func equalContents(a, b map[string]string) (bool, string) {
	for k, v := range a {
		if w, ok := b[k]; !ok {
			return false, fmt.Sprintf("key %q missing", k)
		} else if v != w {
			return false, fmt.Sprintf("key %q differs", k)
		}
	}
	if len(a) != len(b) {
		return false, fmt.Sprintf("%d keys against %d", len(a), len(b))
	}
	return true, ""
}

func waitConverged(t *testing.T, nodes []*testNode, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		first := contents(t, nodes[0].store)
		same, why := true, ""
		for _, n := range nodes[1:] {
			if same, why = equalContents(first, contents(t, n.store)); !same {
				why = n.id + ": " + why
				break
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge within %v: %s", within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func put(t *testing.T, s *replica.Store, key, value string, deleted bool) {
	t.Helper()
	if _, err := s.Coordinate([]byte(key), nil, []byte(value), deleted, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
}

// Replicas that diverged (keys on one side only, concurrent writes of one
// key, deletes) before and after their services start converge to the
// merge of all: every replica's full contents equal, siblings kept,
// tombstones spread.
func TestExchangeRepairsDivergentReplicas(t *testing.T) {
	nodes, _ := newNodes(t, 3, 16, Options{Interval: 30 * time.Millisecond, Rate: -1}, func(i int, s *replica.Store) {
		for k := range 200 {
			if k%3 == i {
				put(t, s, fmt.Sprintf("before-%d", k), fmt.Sprintf("v%d-%d", i, k), false)
			}
		}
		put(t, s, "concurrent", fmt.Sprintf("from-%d", i), false)
	})
	// Written while the services run: their trees must follow.
	for _, n := range nodes {
		n.ae.Start()
	}
	for k := range 100 {
		put(t, nodes[k%3].store, fmt.Sprintf("after-%d", k), "x", false)
	}
	put(t, nodes[2].store, "before-0", "", true) // a delete of a key only n1 wrote: concurrent with it
	waitConverged(t, nodes, 10*time.Second)

	obj, err := nodes[1].store.Get([]byte("concurrent"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(obj.Live()); got != 3 {
		t.Fatalf("concurrent writes on three replicas left %d live siblings, want 3: %v", got, obj)
	}
	obj, _ = nodes[1].store.Get([]byte("before-0"))
	if len(obj.Siblings) != 2 {
		t.Fatalf("a delete concurrent with a write: want both kept as siblings, got %v", obj)
	}
	if n := len(contents(t, nodes[0].store)); n != 200+100+1 {
		t.Fatalf("%d keys, want 301", n)
	}
	// Each pair of replicas has verified every partition.
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range nodes {
		for peer, ps := range n.ae.PeerStatus() {
			for ps.Unverified > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				ps = n.ae.PeerStatus()[peer]
			}
			if ps.Unverified > 0 || ps.Shared != 16 || ps.OldestVerified.IsZero() {
				t.Fatalf("%s about %s: %+v, want 16 shared partitions all verified", n.id, peer, ps)
			}
		}
	}
}

// An exchange sends in proportion to what differs: the roots alone when
// nothing does, and a small multiple of the differing keys otherwise.
func TestExchangeCostIsProportionalToDivergence(t *testing.T) {
	const keys = 5000
	objs := make([]*version.Object, keys)
	ks := make([][]byte, keys)
	for i := range keys {
		ks[i] = []byte(fmt.Sprintf("key-%06d", i))
		o := &version.Object{}
		if _, err := o.Write(version.Actor("w", 1), nil, bytes.Repeat([]byte{'v'}, 100), false, int64(i)); err != nil {
			t.Fatal(err)
		}
		objs[i] = o
	}
	for _, divergent := range []int{0, 10, 1000} {
		t.Run(fmt.Sprint(divergent), func(t *testing.T) {
			nodes, _ := newNodes(t, 2, 64, Options{Interval: time.Hour, Rate: -1}, func(i int, s *replica.Store) {
				if err := s.ApplyBatch(ks, objs); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					for k := range divergent {
						put(t, s, fmt.Sprintf("key-%06d", k*7), "changed", false)
					}
				}
			})
			nodes[1].ae.Build()
			nodes[0].ae.Start() // one round at start, then only on Repair
			waitRounds(t, nodes[0].ae, 1)
			st := nodes[0].ae.Status()
			bytes := st.BytesSent + st.BytesReceived
			t.Logf("%d divergent of %d keys: %d bytes exchanged, %d keys pushed, %d pulled", divergent, keys, bytes, st.KeysPushed, st.KeysPulled)
			roots := uint64(64 * 11)
			perKey := uint64(8*Leaves + 400) // a partition's leaves, the key lists and objects
			if bytes > roots+uint64(divergent)*perKey {
				t.Fatalf("%d bytes for %d divergent keys: want at most %d", bytes, divergent, roots+uint64(divergent)*perKey)
			}
			if st.KeysPushed != uint64(divergent) {
				t.Fatalf("pushed %d keys, want %d", st.KeysPushed, divergent)
			}
			waitConverged(t, nodes, 5*time.Second)
		})
	}
}

func waitRounds(t *testing.T, s *Service, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Status().RoundsDone < n {
		if time.Now().After(deadline) {
			t.Fatalf("round %d not done: %+v", n, s.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Malformed and hostile requests get errors, not panics or allocations
// sized by the attacker.
func TestHandleRefusesMalformedMessages(t *testing.T) {
	nodes, _ := newNodes(t, 2, 4, Options{}, nil)
	s := nodes[0].ae
	for _, tc := range []struct {
		kind    uint8
		payload []byte
	}{
		{KindRoots, nil},
		{KindRoots, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{KindRoots, []byte{1, 9}}, // partition out of range
		{KindLeaves, []byte{4}},
		{KindKeys, []byte{0, 1, 0xff, 0x03}}, // leaf out of range
		{KindGet, []byte{2, 1, 'a'}},
		{KindPut, []byte{1, 1, 'a', 3, 1, 2, 3}}, // not an object
		{99, nil},
	} {
		if _, err := s.Handle(context.Background(), "x", tc.kind, tc.payload); err == nil {
			t.Errorf("kind %d payload %x: accepted", tc.kind, tc.payload)
		}
	}
}

// A tombstone is purged only once every replica holds it: while one
// replica (holding the deleted value) is down, the others keep theirs
// however long it has been; once it is back, anti-entropy gives it the
// tombstone, and then every replica purges the key. The value never comes
// back on any of them.
func TestTombstonesPurgedOnlyOnceEveryReplicaHasThem(t *testing.T) {
	nodes, peers := newNodes(t, 3, 4, Options{Interval: 20 * time.Millisecond, Rate: -1, TombstoneGrace: 50 * time.Millisecond}, nil)
	key := []byte("k")
	written, err := nodes[0].store.Coordinate(key, nil, []byte("old"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if _, _, err := n.store.Apply(key, written); err != nil {
			t.Fatal(err)
		}
	}
	// n3 is down: it keeps the value; n1 deletes and n2 gets the delete.
	peers.mu.Lock()
	peers.down["n3"] = true
	peers.mu.Unlock()
	deleted, err := nodes[0].store.Coordinate(key, written.Context, nil, true, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := nodes[1].store.Apply(key, deleted); err != nil {
		t.Fatal(err)
	}
	nodes[0].ae.Start()
	nodes[1].ae.Start()
	time.Sleep(500 * time.Millisecond) // many rounds, ten times the grace
	for _, n := range nodes[:2] {
		obj, err := n.store.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if obj == nil || !obj.IsDeleted() {
			t.Fatalf("%s purged its tombstone while a replica holding the value was down: %v", n.id, obj)
		}
		if n.ae.Status().RoundsDone < 5 {
			t.Fatalf("%s ran only %d rounds", n.id, n.ae.Status().RoundsDone)
		}
	}
	peers.mu.Lock()
	peers.down["n3"] = false
	peers.mu.Unlock()
	nodes[2].ae.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		gone := 0
		for _, n := range nodes {
			obj, err := n.store.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			if obj == nil {
				gone++
			} else if len(obj.Live()) > 0 && n != nodes[2] {
				t.Fatalf("%s: the deleted value came back: %v", n.id, obj)
			}
		}
		if gone == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tombstone not purged everywhere: %d of 3 replicas", gone)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var purged uint64
	for _, n := range nodes {
		purged += n.ae.Status().TombstonesPurged
	}
	if purged < 3 {
		t.Fatalf("%d tombstones purged, want at least 3", purged)
	}
}

// An old owner that has not handed a partition over yet (it was down when
// the ring changed) holds a value its owners have deleted since. Its
// handover must meet the tombstone, not an empty slot: while it is down,
// and then while it holds the partition, the owners keep the tombstone;
// once it has handed over and dropped its copy, they purge it, and the
// value never comes back.
func TestTombstoneKeptWhileANonOwnerHoldsThePartition(t *testing.T) {
	nodes, peers := newNodesN(t, 4, 3, 4, Options{Interval: 20 * time.Millisecond, Rate: -1, TombstoneGrace: 50 * time.Millisecond}, nil)
	byID := map[string]*testNode{}
	for _, n := range nodes {
		byID[n.id] = n
	}
	key := []byte("k")
	p := peers.ring.PartitionOfKey(key)
	owners := peers.ring.Preference(p)
	var old *testNode
	for _, n := range nodes {
		if !slices.Contains(owners, n.id) {
			old = n
		}
	}
	written, err := byID[owners[0]].store.Coordinate(key, nil, []byte("old"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.id != owners[0] {
			if _, _, err := n.store.Apply(key, written); err != nil {
				t.Fatal(err)
			}
		}
	}
	deleted, err := byID[owners[0]].store.Coordinate(key, written.Context, nil, true, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range owners[1:] {
		if _, _, err := byID[id].store.Apply(key, deleted); err != nil {
			t.Fatal(err)
		}
	}
	tombstoneKept := func(when string) {
		t.Helper()
		for _, id := range owners {
			obj, err := byID[id].store.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			if obj == nil || !obj.IsDeleted() {
				t.Fatalf("%s: owner %s purged the tombstone (%v)", when, id, obj)
			}
		}
	}
	peers.mu.Lock()
	peers.down[old.id] = true
	peers.mu.Unlock()
	for _, id := range owners {
		byID[id].ae.Start()
	}
	time.Sleep(400 * time.Millisecond) // many rounds, eight times the grace
	tombstoneKept("while the old owner is down")
	for _, id := range owners {
		if r := byID[id].ae.Status().RoundsDone; r < 5 {
			t.Fatalf("%s ran only %d rounds", id, r)
		}
	}
	peers.mu.Lock()
	peers.down[old.id] = false
	peers.mu.Unlock()
	old.ae.Build()
	time.Sleep(300 * time.Millisecond)
	tombstoneKept("while the old owner holds the partition")

	removed, err := old.ae.DropPartition(p, owners, func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if removed != 1 {
		t.Fatalf("the old owner removed %d keys, want 1", removed)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		gone := 0
		for _, n := range nodes {
			obj, err := n.store.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			if obj != nil && len(obj.Live()) > 0 {
				t.Fatalf("%s: the deleted value came back: %v", n.id, obj)
			}
			if obj == nil {
				gone++
			}
		}
		if gone == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tombstone not purged once the old owner dropped the partition: gone on %d of 4", gone)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A replica whose engine quarantines a damaged table (a flipped byte in a
// data block) loses that table's keys; told through the engine's callback,
// anti-entropy gets them back from the other replica.
func TestQuarantinedTableIsRepairedFromPeers(t *testing.T) {
	var members []ring.Member
	for _, id := range []string{"n1", "n2"} {
		members = append(members, ring.Member{ID: id, State: ring.StateNormal})
	}
	rg, err := ring.New(ring.Config{Partitions: 16, Replicas: 2}, members)
	if err != nil {
		t.Fatal(err)
	}
	peers := &staticPeers{ring: rg, down: map[string]bool{}}
	net := transport.NewNetwork()
	var stores []*replica.Store
	var services []*Service
	dirs := []string{t.TempDir(), t.TempDir()}
	for i, id := range []string{"n1", "n2"} {
		var ae *Service
		var aeMu sync.Mutex
		db, err := storage.Open(dirs[i], &storage.Options{Sync: storage.SyncNone, BlockCacheSize: 1, // no block stays cached: reads see the damage
			OnQuarantine: func(q storage.QuarantinedTable) {
				aeMu.Lock()
				defer aeMu.Unlock()
				if ae != nil {
					ae.LostRange(q.Smallest, q.Largest)
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		st := replica.New(db, version.Actor(id, uint64(i+1)))
		s, err := New(id, st, peers, net.Client(id), Options{Interval: time.Hour, Rate: -1})
		if err != nil {
			t.Fatal(err)
		}
		aeMu.Lock()
		ae = s
		aeMu.Unlock()
		stop, err := net.Listen(id, transport.HandlerFunc(s.Handle))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(); stop.Close(); db.Close() })
		stores, services = append(stores, st), append(services, s)
	}
	var keys [][]byte
	var objs []*version.Object
	for i := range 2000 {
		o := &version.Object{}
		if _, err := o.Write(version.Actor("w", 1), nil, bytes.Repeat([]byte{byte(i)}, 64), false, int64(i)); err != nil {
			t.Fatal(err)
		}
		keys, objs = append(keys, []byte(fmt.Sprintf("key-%05d", i))), append(objs, o)
	}
	for _, st := range stores {
		if err := st.ApplyBatch(keys, objs); err != nil {
			t.Fatal(err)
		}
		if err := st.DB().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range services {
		s.Build()
		s.Start()
	}
	waitRounds(t, services[0], 1)
	// Flip a byte in the middle of n1's table.
	tables, _ := filepath.Glob(filepath.Join(dirs[0], "*.sst"))
	if len(tables) != 1 {
		t.Fatalf("want one table, found %v", tables)
	}
	f, err := os.OpenFile(tables[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Stat()
	b := make([]byte, 1)
	off := info.Size() / 3
	f.ReadAt(b, off)
	b[0] ^= 0xff
	f.WriteAt(b, off)
	f.Close()
	// Reads find the damage; the table is quarantined and its keys lost.
	corrupt := 0
	for _, k := range keys {
		if _, err := stores[0].Get(k); err != nil {
			corrupt++
		}
	}
	if corrupt == 0 || len(stores[0].DB().Quarantined()) != 1 {
		t.Fatalf("%d reads failed, %d tables quarantined: the damage was not found", corrupt, len(stores[0].DB().Quarantined()))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := 0
		for i, k := range keys {
			obj, err := stores[0].Get(k)
			if err != nil || obj == nil || !obj.Equal(objs[i]) {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys still missing on n1 after the quarantine (status %+v)", missing, services[0].Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("n1 pulled %d keys back", services[0].Status().KeysPulled)
}

// Verifications are of a peer's incarnation: once the peer answers with a
// new one (restarted on a wiped disk), what was verified against the old
// one no longer counts (it could let a tombstone be purged that the peer
// no longer holds).
func TestVerificationsAreVoidedByANewIncarnation(t *testing.T) {
	nodes, _ := newNodes(t, 2, 16, Options{Interval: time.Hour, Rate: -1}, nil)
	nodes[1].ae.Build()
	nodes[0].ae.Start()
	waitRounds(t, nodes[0].ae, 1)
	if ps := nodes[0].ae.PeerStatus()["n2"]; ps.Unverified != 0 || ps.Shared != 16 {
		t.Fatalf("after a round: %+v, want 16 shared, all verified", ps)
	}
	// n2 comes back on a new disk: a new incarnation whose trees are not
	// built yet, so no partition can be verified against it for now.
	db, err := storage.Open(t.TempDir(), &storage.Options{Sync: storage.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fresh, err := New("n2", replica.New(db, version.Actor("n2", 99)), nodes[1].ae.peers, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	nodes[1].ae.store = fresh.store // n2's handler now answers as the new incarnation
	nodes[1].ae.trees = fresh.trees
	waitRounds(t, nodes[0].ae, nodes[0].ae.Repair())
	if ps := nodes[0].ae.PeerStatus()["n2"]; ps.Unverified != 16 {
		t.Fatalf("after the peer's new incarnation: %+v, want all 16 unverified", ps)
	}
}

// A partition that a ring change gives back to the dropping node while it
// removes its copy: the removal stops at the first key after the change,
// with ErrRegained, and every key not yet removed stays.
func TestDropStopsWhenThePartitionIsRegained(t *testing.T) {
	nodes, peers := newNodesN(t, 4, 3, 1, Options{Interval: time.Hour, Rate: -1}, nil)
	p := 0
	owners := peers.ring.Preference(p)
	var old *testNode
	for _, n := range nodes {
		if !slices.Contains(owners, n.id) {
			old = n
		}
	}
	const keys = 20
	for i := range keys {
		if _, err := old.store.Coordinate([]byte(fmt.Sprintf("k%02d", i)), nil, []byte("v"), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.ae.Build()
	}
	asked := 0
	removed, err := old.ae.DropPartition(p, owners, func() bool {
		asked++
		return asked <= 5 // the ring gives the partition back after 5 keys
	})
	if !errors.Is(err, ErrRegained) {
		t.Fatalf("DropPartition: %v, want ErrRegained", err)
	}
	if removed != 5 {
		t.Fatalf("removed %d keys, want the 5 removed before the partition was regained", removed)
	}
	left := 0
	if err := old.store.Scan(0, math.MaxUint64, func(replica.Entry) bool { left++; return true }); err != nil {
		t.Fatal(err)
	}
	if left != keys-5 {
		t.Fatalf("%d keys left on the node that regained the partition, want %d", left, keys-5)
	}
	for _, id := range owners {
		n := 0
		for _, m := range nodes {
			if m.id == id {
				if err := m.store.Scan(0, math.MaxUint64, func(replica.Entry) bool { n++; return true }); err != nil {
					t.Fatal(err)
				}
			}
		}
		if n != keys {
			t.Fatalf("owner %s holds %d keys after the handover, want %d", id, n, keys)
		}
	}
}
