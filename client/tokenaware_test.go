package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/ring"
)

// taCluster is a set of API nodes sharing one store (so any node can serve
// any key), each answering GET /v1/cluster with the same, swappable ring,
// and recording which node each key request reached.
type taCluster struct {
	t     *testing.T
	store httpapi.Store
	nodes map[string]*httptest.Server // by node ID
	addrs map[string]string           // node ID -> host:port
	view  atomic.Pointer[httpapi.ClusterStatus]
	ring  atomic.Pointer[ring.Ring]

	mu   sync.Mutex
	hits []hit // key requests, in arrival order
}

type hit struct{ node, path string }

type sharedView struct{ c *taCluster }

func (v sharedView) Status() httpapi.ClusterStatus { return *v.c.view.Load() }

func newTACluster(t *testing.T, ids ...string) *taCluster {
	c := &taCluster{t: t, store: httpapi.NewMemoryStore("n1"), nodes: map[string]*httptest.Server{}, addrs: map[string]string{}}
	for _, id := range ids {
		h := httpapi.NewHandler(c.store, sharedView{c}, httpapi.Options{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/kv/") {
				c.mu.Lock()
				c.hits = append(c.hits, hit{id, r.URL.Path})
				c.mu.Unlock()
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		c.nodes[id] = srv
		c.addrs[id] = strings.TrimPrefix(srv.URL, "http://")
	}
	return c
}

// setRing makes every node answer /v1/cluster with the ring of members
// (all normal) and replicas, marking dead ones not alive.
func (c *taCluster) setRing(replicas int, members []string, dead ...string) {
	c.t.Helper()
	var ms []ring.Member
	for _, id := range members {
		ms = append(ms, ring.Member{ID: id, State: ring.StateNormal})
	}
	r, err := ring.New(ring.Config{Partitions: 16, Replicas: replicas}, ms)
	if err != nil {
		c.t.Fatal(err)
	}
	st := httpapi.StatusFromRing("n1", r)
	for i := range st.Members {
		m := &st.Members[i]
		m.HTTPAddr = c.addrs[m.ID]
		m.Alive = true
		for _, d := range dead {
			if d == m.ID {
				m.Alive = false
			}
		}
	}
	c.ring.Store(r)
	c.view.Store(&st)
}

// last returns the node that received the last key request, and how many
// key requests arrived in all.
func (c *taCluster) last() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hits) == 0 {
		return "", 0
	}
	return c.hits[len(c.hits)-1].node, len(c.hits)
}

func (c *taCluster) primary(key string) string {
	return c.ring.Load().PreferenceForKey([]byte(key))[0]
}

func TestTokenAwareSendsEachRequestToTheKeysPrimary(t *testing.T) {
	tc := newTACluster(t, "n1", "n2", "n3")
	tc.setRing(2, []string{"n1", "n2", "n3"})
	// One seed address is enough: the others come from the ring.
	c := New([]string{tc.addrs["n2"]}, Options{TokenAware: true})
	ctx := context.Background()
	if err := c.FetchRing(ctx); err != nil {
		t.Fatal(err)
	}
	if known, exact := c.RingKnown(); !known || !exact {
		t.Fatalf("RingKnown = %v, %v; want a ring with whole preference lists", known, exact)
	}
	perNode := map[string]int{}
	for i := range 200 {
		key := fmt.Sprintf("user%d", i)
		want := tc.primary(key)
		if reps := c.ReplicasOf([]byte(key)); len(reps) != 2 || reps[0] != "http://"+tc.addrs[want] {
			t.Fatalf("ReplicasOf(%s) = %v, primary %s at %s", key, reps, want, tc.addrs[want])
		}
		tok, err := c.Put(ctx, []byte(key), []byte("v"), "")
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := tc.last(); got != want {
			t.Fatalf("Put %s reached %s, its primary is %s", key, got, want)
		}
		if _, err := c.Put(ctx, []byte(key), []byte("w"), tok); err != nil {
			t.Fatal(err)
		}
		res, err := c.Get(ctx, []byte(key))
		if err != nil || len(res.Siblings) != 1 || string(res.Siblings[0].Value) != "w" {
			t.Fatalf("Get %s: %+v %v", key, res, err)
		}
		if got, _ := tc.last(); got != want {
			t.Fatalf("Get %s reached %s, its primary is %s", key, got, want)
		}
		if err := c.Delete(ctx, []byte(key), res.Context); err != nil {
			t.Fatal(err)
		}
		if got, _ := tc.last(); got != want {
			t.Fatalf("Delete %s reached %s, its primary is %s", key, got, want)
		}
		perNode[want]++
	}
	// Every node is some keys' primary: the load is spread, not pinned
	// to the seed.
	if len(perNode) != 3 {
		t.Fatalf("primaries used: %v", perNode)
	}
}

func TestTokenAwareFetchesTheRingByItselfAndRoundRobinsUntilThen(t *testing.T) {
	tc := newTACluster(t, "n1", "n2", "n3")
	tc.setRing(1, []string{"n1", "n2", "n3"})
	c := New([]string{tc.addrs["n1"], tc.addrs["n2"], tc.addrs["n3"]}, Options{TokenAware: true})
	ctx := context.Background()
	if known, _ := c.RingKnown(); known {
		t.Fatal("ring known before any request")
	}
	// The first requests go round-robin and start a background fetch.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Put(ctx, []byte("k"), []byte("v"), ""); err != nil {
			t.Fatal(err)
		}
		if known, _ := c.RingKnown(); known {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client never fetched the ring")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 50 {
		key := fmt.Sprintf("k%d", i)
		if _, err := c.Put(ctx, []byte(key), []byte("v"), ""); err != nil {
			t.Fatal(err)
		}
		if got, _ := tc.last(); got != tc.primary(key) {
			t.Fatalf("%s reached %s, not its primary %s", key, got, tc.primary(key))
		}
	}
}

func TestTokenAwareStaleRingStillWorks(t *testing.T) {
	tc := newTACluster(t, "n1", "n2", "n3", "n4")
	tc.setRing(2, []string{"n1", "n2", "n3"})
	c := New([]string{tc.addrs["n1"]}, Options{TokenAware: true, RingRefresh: time.Hour})
	ctx := context.Background()
	if err := c.FetchRing(ctx); err != nil {
		t.Fatal(err)
	}
	old := tc.ring.Load()

	// n4 joins: the client's ring is stale, and requests for the keys n4
	// is now primary of still succeed (at their old primary, which in a
	// real cluster forwards them).
	tc.setRing(2, []string{"n1", "n2", "n3", "n4"})
	var moved []string
	for i := 0; len(moved) < 20 && i < 10000; i++ {
		if key := fmt.Sprintf("key%d", i); tc.primary(key) == "n4" {
			moved = append(moved, key)
		}
	}
	if len(moved) < 20 {
		t.Fatal("n4 is primary of too few keys")
	}
	for _, key := range moved {
		if _, err := c.Put(ctx, []byte(key), []byte("v"), ""); err != nil {
			t.Fatal(err)
		}
		if got, _ := tc.last(); got != old.PreferenceForKey([]byte(key))[0] && got != "n4" {
			t.Fatalf("%s reached %s with a stale ring", key, got)
		}
	}
	// The periodic refresh picks the new ring up.
	c.o.RingRefresh = 50 * time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for reps := c.ReplicasOf([]byte(moved[0])); len(reps) == 0 || reps[0] != "http://"+tc.addrs["n4"]; reps = c.ReplicasOf([]byte(moved[0])) {
		if time.Now().After(deadline) {
			t.Fatalf("ring not refreshed: %v", reps)
		}
		if _, err := c.Get(ctx, []byte(moved[0])); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, key := range moved {
		if _, err := c.Get(ctx, []byte(key)); err != nil {
			t.Fatal(err)
		}
		if got, _ := tc.last(); got != "n4" {
			t.Fatalf("%s reached %s after the refresh, want n4", key, got)
		}
	}

	// n4 dies without the ring saying so: reads fail over to the next
	// replica, and writes too once nothing can connect (a dial error; a
	// write on a kept-alive connection the node dropped is not retried,
	// since the node may have applied it, so the read goes first here).
	tc.nodes["n4"].Close()
	for _, key := range moved {
		res, err := c.Get(ctx, []byte(key))
		if err != nil || len(res.Siblings) == 0 {
			t.Fatalf("Get %s with its primary down: %+v %v", key, res, err)
		}
		if got, _ := tc.last(); got == "n4" {
			t.Fatalf("%s reached the closed n4", key)
		}
		if _, err := c.Put(ctx, []byte(key), []byte("again"), res.Context); err != nil {
			t.Fatalf("Put %s with its primary down: %v", key, err)
		}
		if got, _ := tc.last(); got == "n4" {
			t.Fatalf("%s reached the closed n4", key)
		}
	}
	// Once the nodes see n4 down, the client tries it last.
	tc.setRing(2, []string{"n1", "n2", "n3", "n4"}, "n4")
	deadline = time.Now().Add(5 * time.Second)
	for reps := c.ReplicasOf([]byte(moved[0])); len(reps) != 2 || reps[1] != "http://"+tc.addrs["n4"]; reps = c.ReplicasOf([]byte(moved[0])) {
		if time.Now().After(deadline) {
			t.Fatalf("dead primary not moved last: %v", reps)
		}
		c.Get(ctx, []byte(moved[0]))
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTokenAwareWithoutAnyRingUsesRoundRobin(t *testing.T) {
	// A node whose status has no partitions (no ring yet): the client
	// keeps working round-robin.
	srv := newNode(t, httpapi.NewMemoryStore("n1"))
	c := New([]string{deadAddr(t), srv.URL}, Options{TokenAware: true})
	ctx := context.Background()
	// newNode's view has 8 partitions but no ownership: routes go to no
	// replica, then to every known address.
	if err := c.FetchRing(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := c.Put(ctx, []byte(fmt.Sprint(i)), []byte("v"), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// No node answers the ring at all: round-robin with failover.
	c2 := New([]string{deadAddr(t), srv.URL}, Options{TokenAware: true})
	if _, err := c2.Put(ctx, []byte("x"), []byte("v"), ""); err != nil {
		t.Fatal(err)
	}
}
