package dockerfaults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/autoscale"
	"github.com/ringkv/ringkv/internal/faults"
)

// dockerSocket is the daemon's unix socket, as the docker command finds it.
func dockerSocket() string {
	if s, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		return s
	}
	return "/var/run/docker.sock"
}

// orchestrator returns a Docker orchestrator for c's networks: new nodes
// get a fixed address on the peer network, join the client network, and
// publish their ports on 127.0.0.1. Its containers are removed at the end
// of the test (registered after the cluster's cleanup, so before the
// networks go).
func orchestrator(t *testing.T, c *cluster) *autoscale.Docker {
	d := &autoscale.Docker{
		Socket: dockerSocket(), Image: c.image, Network: c.peerNet, ExtraNetworks: []string{c.clNet},
		Prefix: c.prefix + "-as", Join: []string{c.nodes[0].peerAddr()}, Args: []string{"--timeout", "1s", "--insecure"},
		PublishHost: "127.0.0.1", StopTimeout: 10 * time.Second,
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		nodes, err := d.List(ctx)
		if err != nil {
			t.Errorf("list the autoscaled containers to remove them: %v", err)
		}
		for _, nd := range nodes {
			if t.Failed() || os.Getenv("RINGKV_DOCKERFAULTS_LOGS") != "" {
				out, _ := dockerCmd(t, "logs", "--tail", "150", nd.ID)
				t.Logf("--- last log lines of %s ---\n%s", nd.ID, out)
			}
			dockerCmd(t, "rm", "-f", "-v", nd.ID)
		}
	})
	return d
}

// managed returns the orchestrator's node id (its published addresses).
func managed(t *testing.T, d *autoscale.Docker, id string) (autoscale.Node, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := d.List(ctx)
	if err != nil {
		t.Logf("list: %v", err)
		return autoscale.Node{}, false
	}
	for _, nd := range nodes {
		if nd.ID == id {
			return nd, true
		}
	}
	return autoscale.Node{}, false
}

// memberState returns id's state and liveness as node o sees it.
func (c *cluster) memberState(o *node, id string) (state string, alive bool, err error) {
	st, err := c.status(o)
	if err != nil {
		return "", false, err
	}
	for _, m := range st.Members {
		if m.ID == id {
			return m.State, m.Alive, nil
		}
	}
	return "", false, nil
}

// TestAutoscaleDockerOrchestrator: the Docker orchestrator starts a real
// container of the image that joins a three-node cluster (every node sees
// it alive and normal, and it answers on its published port as itself)
// and lists it; once the node is decommissioned and has left, it removes
// it: the container is gone. Then the same with the peer address by name
// (the next ID: the one that left is never given again).
func TestAutoscaleDockerOrchestrator(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "asdock", 3)
	d := orchestrator(t, c)
	d.Reserved = func(context.Context) ([]string, error) {
		st, err := c.status(c.nodes[0])
		var ids []string
		for _, m := range st.Members {
			ids = append(ids, m.ID)
		}
		return ids, err
	}
	_, h := c.nodes[1].addrs()
	cl := &autoscale.HTTPCluster{Addrs: []string{h}, Client: c.hc}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	id := c.addNode(t, ctx, d, c.prefix+"-as-1")
	nd, ok := managed(t, d, id)
	if !ok || !nd.Running || nd.HTTPAddr == "" || nd.RESPAddr == "" {
		t.Fatalf("the orchestrator lists %+v (%v)", nd, ok)
	}
	r, err := c.hc.Get("http://" + nd.HTTPAddr + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		NodeID string `json:"node_id"`
		Load   *struct {
			WindowSeconds int `json:"window_seconds"`
		} `json:"load"`
	}
	err = json.NewDecoder(r.Body).Decode(&st)
	r.Body.Close()
	if err != nil || st.NodeID != id || st.Load == nil || st.Load.WindowSeconds == 0 {
		t.Fatalf("%s's /v1/cluster on its published port: %+v %v", id, st, err)
	}
	c.decommissionAndRemove(t, ctx, cl, d, id)

	// By name: --peer-addr <container name>:7000, on the peer network
	// alone (where the name resolves to one address), not published.
	d.PeerByName, d.ExtraNetworks, d.PublishHost = true, nil, ""
	id2 := c.addNode(t, ctx, d, c.prefix+"-as-2")
	st2, err := c.status(c.nodes[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st2.Members {
		if m.ID == id2 && m.PeerAddr != id2+":7000" {
			t.Fatalf("%s advertises peer address %q, want its name", id2, m.PeerAddr)
		}
	}
	c.decommissionAndRemove(t, ctx, cl, d, id2)
	if nodes, err := d.List(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("after removing both: %+v %v", nodes, err)
	}
}

// addNode starts a node with d, checks its ID, and waits until every node
// sees it alive and normal.
func (c *cluster) addNode(t *testing.T, ctx context.Context, d *autoscale.Docker, want string) string {
	t.Helper()
	id, err := d.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id != want {
		t.Fatalf("node %q, want %q", id, want)
	}
	start := time.Now()
	var seen []string
	if !pollUntil(90*time.Second, func() bool {
		seen = seen[:0]
		ok := true
		for _, o := range c.nodes {
			s, alive, err := c.memberState(o, id)
			seen = append(seen, fmt.Sprintf("%s sees it %q alive=%v (%v)", o.id, s, alive, err))
			ok = ok && err == nil && s == "normal" && alive
		}
		return ok
	}) {
		t.Fatalf("%s not alive and normal on every node after 90s: %s", id, strings.Join(seen, ", "))
	}
	t.Logf("%s normal and alive on every node %v after its start", id, time.Since(start).Round(100*time.Millisecond))
	return id
}

// decommissionAndRemove decommissions id through the cluster, waits until
// every node sees it left, and removes its container with d.
func (c *cluster) decommissionAndRemove(t *testing.T, ctx context.Context, cl *autoscale.HTTPCluster, d *autoscale.Docker, id string) {
	t.Helper()
	if err := cl.Decommission(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "every node sees "+id+" left", func() bool {
		for _, o := range c.nodes {
			if s, _, err := c.memberState(o, id); err != nil || s != "left" {
				return false
			}
		}
		return true
	})
	if err := d.RemoveNode(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, ok := managed(t, d, id); ok {
		t.Fatalf("%s still listed after its removal", id)
	}
	if _, err := dockerCmd(t, "inspect", id); err == nil {
		t.Fatalf("container %s still exists", id)
	}
}

// loadGen writes unique keys at W=2 (and reads them back at the nodes'
// default level) through the Redis ports of the nodes that stay, at a rate
// it can change, recording every failure.
type loadGen struct {
	c       *cluster
	perNode atomic.Int64 // operations per second per node

	mu     sync.Mutex
	acked  map[string]string
	errs   []string
	failed int
	ops    int
}

func (g *loadGen) run(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for i, nd := range g.c.nodes {
		resp, _ := nd.addrs()
		rc := redis.NewClient(&redis.Options{Addr: resp, MaxRetries: -1, DialTimeout: time.Second,
			ReadTimeout: 4 * time.Second, WriteTimeout: 4 * time.Second, PoolSize: 2,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error {
				return cn.Do(ctx, "RINGKV.CONFIG", "SET", "w", "2").Err()
			}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rc.Close()
			for k := 0; ctx.Err() == nil; k++ {
				start := time.Now()
				g.op(ctx, rc, nd.id, fmt.Sprintf("as-%d-%d", i, k), k%4 == 0)
				rate := g.perNode.Load()
				if rate <= 0 {
					rate = 1
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second/time.Duration(rate) - time.Since(start)):
				}
			}
		}()
	}
	return wg.Wait
}

// op writes key once, then reads it back if read.
func (g *loadGen) op(ctx context.Context, rc *redis.Client, via, key string, read bool) {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	v := key + "-v"
	err := rc.Set(octx, key, v, 0).Err()
	var rerr error
	if err == nil && read {
		var got string
		got, rerr = rc.Get(octx, key).Result()
		if rerr == nil && got != v {
			rerr = fmt.Errorf("read %q, want %q", got, v)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ops++
	if err == nil {
		g.acked[key] = v
	}
	for _, e := range []error{err, rerr} {
		if e != nil {
			g.failed++
			if len(g.errs) < 10 {
				g.errs = append(g.errs, fmt.Sprintf("%s via %s at %s: %v", key, via, time.Now().Format("15:04:05.000"), e))
			}
		}
	}
}

// TestAutoscaleScalesOutAndIn: the autoscaler, with low thresholds (one
// host adds no capacity: this tests the control loop), watches a
// three-node cluster under a load generator writing at W=2 through the
// three nodes. The load stays high: it adds a fourth container, which
// joins and takes its share (a quarter of the partitions' replicas,
// streamed to it). The load drops to a trickle: it decommissions that
// node, waits until it has left, and removes its container. No request
// of the clients of the nodes that stay fails at any point, and every
// acknowledged write reads back from all three nodes at R=ALL at the end.
func TestAutoscaleScalesOutAndIn(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "autoscale", 3)
	d := orchestrator(t, c)
	published := map[string]string{}
	for _, nd := range c.nodes {
		_, h := nd.addrs()
		published[nd.id] = h
	}
	cl := &autoscale.HTTPCluster{
		Addrs: slices.Collect(func(yield func(string) bool) {
			for _, h := range published {
				if !yield(h) {
					return
				}
			}
		}),
		Client: &http.Client{Timeout: 3 * time.Second},
		// The host reaches containers through their published ports only.
		Resolve: func(m autoscale.Member) string {
			if h, ok := published[m.ID]; ok {
				return h
			}
			if nd, ok := managed(t, d, m.ID); ok && nd.HTTPAddr != "" {
				return nd.HTTPAddr
			}
			return "127.0.0.1:1" // not reachable from here
		},
	}
	d.Reserved = func(ctx context.Context) ([]string, error) {
		ms, err := cl.Members(ctx)
		var ids []string
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		return ids, err
	}
	policy := autoscale.Policy{HighRPS: 20, LowRPS: 5, Window: 5 * time.Second, Cooldown: 15 * time.Second, MinNodes: 3, MaxNodes: 4}
	var logMu sync.Mutex
	var log []string
	logged := func(s string) bool {
		logMu.Lock()
		defer logMu.Unlock()
		for _, l := range log {
			if strings.Contains(l, s) {
				return true
			}
		}
		return false
	}
	ctl, err := autoscale.NewController(policy, cl, d, autoscale.Options{Interval: time.Second, JoinTimeout: 3 * time.Minute,
		Logf: func(f string, a ...any) {
			l := time.Now().Format("15:04:05.000 ") + fmt.Sprintf(f, a...)
			logMu.Lock()
			log = append(log, l)
			logMu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		logMu.Lock()
		defer logMu.Unlock()
		t.Logf("the controller's log:\n%s", strings.Join(log, "\n"))
	}()

	g := &loadGen{c: c, acked: map[string]string{}}
	g.perNode.Store(50) // 50 req/s per node: high (> 20) on three nodes and on four
	lctx, stopLoad := context.WithCancel(context.Background())
	waitLoad := g.run(lctx)
	defer waitLoad()
	defer stopLoad()
	cctx, stopCtl := context.WithCancel(context.Background())
	ctlDone := make(chan struct{})
	go func() { defer close(ctlDone); ctl.Run(cctx) }()
	defer func() { stopCtl(); <-ctlDone }()

	id := c.prefix + "-as-1"
	start := time.Now()
	waitFor(t, 90*time.Second, "the autoscaler adds a node", func() bool { _, ok := managed(t, d, id); return ok })
	t.Logf("%s added %v after the load started", id, time.Since(start).Round(time.Second))
	if !logged("add a node: load high") {
		t.Fatalf("no decision to add in the log")
	}
	waitFor(t, 3*time.Minute, id+" normal and alive on every node", func() bool {
		for _, o := range c.nodes {
			if s, alive, err := c.memberState(o, id); err != nil || s != "normal" || !alive {
				return false
			}
		}
		return true
	})
	t.Logf("%s joined %v after the load started", id, time.Since(start).Round(time.Second))
	// Its share: a quarter of the partitions' replicas, streamed to it.
	st, err := c.status(c.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	fair := st.Partitions * st.Replicas / 4
	if got := st.ReplicaCounts[id]; got < fair/2 || st.PrimaryCounts[id] == 0 {
		t.Fatalf("%s replicates %d partitions (primary for %d); its fair share is %d", id, got, st.PrimaryCounts[id], fair)
	}
	nd, _ := managed(t, d, id)
	var tr struct {
		Transfers []struct {
			Kind, State string
			Bytes       uint64
		}
	}
	if r, err := c.hc.Get("http://" + nd.HTTPAddr + "/v1/transfers"); err == nil {
		json.NewDecoder(r.Body).Decode(&tr)
		r.Body.Close()
	}
	var streamed uint64
	for _, x := range tr.Transfers {
		streamed += x.Bytes
	}
	if streamed == 0 {
		t.Fatalf("%s streamed nothing on joining: %+v", id, tr.Transfers)
	}
	t.Logf("%s replicates %d partitions (fair share %d), primary for %d; it streamed %d bytes", id, st.ReplicaCounts[id], fair, st.PrimaryCounts[id], streamed)
	// Still high on four nodes, and four is the maximum: no fifth.
	time.Sleep(3 * time.Second)
	if !logged("the maximum is 4") {
		t.Errorf("the controller did not hold at the maximum")
	}

	// A trickle: 2 req/s per node, low (< 5) on four nodes and on three.
	g.perNode.Store(2)
	h := time.Now()
	waitFor(t, 3*time.Minute, id+" left and its container removed", func() bool {
		_, ok := managed(t, d, id)
		s, _, err := c.memberState(c.nodes[0], id)
		return !ok && err == nil && s == "left"
	})
	t.Logf("%s decommissioned and removed %v after the load dropped", id, time.Since(h).Round(time.Second))
	for _, want := range []string{"decommission " + id + ": load low", id + " is leaving", "removed " + id + ": it had left the ring"} {
		if !logged(want) {
			t.Errorf("the log has no %q", want)
		}
	}
	for _, o := range c.nodes {
		if s, _, err := c.memberState(o, id); err != nil || s != "left" {
			t.Errorf("%s sees %s as %q (%v)", o.id, id, s, err)
		}
	}
	time.Sleep(2 * time.Second) // a little load on the three alone
	stopLoad()
	waitLoad()
	stopCtl() // the reads below are load too
	<-ctlDone

	g.mu.Lock()
	defer g.mu.Unlock()
	t.Logf("%d operations, %d failed, %d writes acknowledged", g.ops, g.failed, len(g.acked))
	if g.failed > 0 {
		t.Fatalf("%d requests of the clients of the nodes that stay failed: %s", g.failed, strings.Join(g.errs, "; "))
	}
	// Every acknowledged write is on all three nodes that stay.
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range g.acked {
			if !yield(k) {
				return
			}
		}
	})
	var bad []string
	var badMu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(keys); i += 8 {
				_, addr := c.nodes[i%3].addrs()
				res, _, err := faults.HTTPGet(c.hc, addr, keys[i], "ALL")
				if err == nil && (len(res.Values) != 1 || res.Values[0] != g.acked[keys[i]]) {
					err = fmt.Errorf("read %v", res.Values)
				}
				if err != nil {
					badMu.Lock()
					if len(bad) < 10 {
						bad = append(bad, fmt.Sprintf("%s: %v", keys[i], err))
					}
					badMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("acknowledged writes not read back at R=ALL from the three nodes: %s", strings.Join(bad, "; "))
	}
}
