package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A node shutting down hands the hints it keeps to their targets that are
// up: with delivery passes an hour apart, only Shutdown can have
// delivered them, and afterwards the returned node holds every key.
func TestShutdownHandsHintsOver(t *testing.T) {
	configs := map[string]Config{}
	start := func(id string, join ...string) *Server {
		cfg, ok := configs[id]
		if !ok {
			cfg = Config{NodeID: id, DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
				RespAddr: "127.0.0.1:0", Replicas: 3, Partitions: 64, Join: join,
				W: "2", HintInterval: time.Hour, RequestTimeout: 500 * time.Millisecond,
				RepairInterval: -1} // no anti-entropy: only hints can bring c the keys
			configs[id] = cfg
		}
		s, err := Start(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		return s
	}
	a := start("a")
	defer a.Close()
	b := start("b", a.cfg.PeerAddr)
	defer b.Close()
	c := start("c", a.cfg.PeerAddr)
	alive := func(s *Server, id string, want bool) func() bool {
		return func() bool { return s.Membership().Alive(id) == want }
	}
	waitFor(t, "c alive on a", alive(a, "c", true))
	c.Close()
	waitFor(t, "c down on a", alive(a, "c", false))

	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: a.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	const n = 100
	for i := range n {
		if err := rc.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatalf("SET k%d with c down: %v", i, err)
		}
	}
	pending := func() int { return a.hints.Stats()["c"].Pending }
	if pending() == 0 {
		t.Fatalf("a keeps no hints for c after %d writes with c down", n)
	}
	c = start("c")
	defer func() { c.Close() }()
	waitFor(t, "c back on a", alive(a, "c", true))
	time.Sleep(200 * time.Millisecond)
	before := pending()
	if before == 0 {
		t.Fatalf("hints were delivered before the shutdown (passes are an hour apart)")
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	missing := 0
	for i := range n {
		obj, err := c.store.Get([]byte(fmt.Sprintf("k%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if obj == nil || obj.Empty() {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("after a's shutdown, c lacks %d of %d keys (a had %d hints for it)", missing, n, before)
	}
	t.Logf("a handed %d hints to c while shutting down", before)
}
