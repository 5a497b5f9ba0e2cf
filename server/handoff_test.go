package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/coordinator"
)

// A write that a stopped node missed is kept as a hint by the node that
// coordinated it, shown per member in /v1/cluster, and delivered (then
// deleted) once the stopped node is back, with no read of the key.
func TestStoppedNodeGetsMissedWritesByHintAndClusterViewShowsThem(t *testing.T) {
	cfg := func(id, peer, dir string, join ...string) Config {
		return Config{NodeID: id, DataDir: dir, PeerAddr: peer, HTTPAddr: "127.0.0.1:0", Replicas: 2,
			Partitions: 64, W: "1", Join: join, RequestTimeout: 500 * time.Millisecond}
	}
	aPeer, bPeer, bDir := freePeerAddr(t), freePeerAddr(t), t.TempDir()
	a, err := Start(cfg("a", aPeer, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(cfg("b", bPeer, bDir, aPeer))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b alive", func() bool { return a.Membership().Alive("b") })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b down", func() bool { return !a.Membership().Alive("b") })

	key := []byte("missed")
	if _, err := a.Coordinator().Put(context.Background(), key, []byte("v"), nil, coordinator.One); err != nil {
		t.Fatalf("put at W=1 with b down: %v", err)
	}
	member := func() httpapi.MemberStatus {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/v1/cluster")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st httpapi.ClusterStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.ID == "b" {
				return m
			}
		}
		t.Fatal("b missing from /v1/cluster")
		return httpapi.MemberStatus{}
	}
	waitFor(t, "/v1/cluster shows a hint for b", func() bool { m := member(); return m.HintsPending == 1 && m.HintsBytes > 0 })

	b, err = Start(cfg("b", bPeer, bDir, aPeer))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, "the hint is delivered and deleted", func() bool { m := member(); return m.HintsPending == 0 && m.HintsBytes == 0 })
	obj, err := b.store.Get(key)
	if err != nil || obj == nil {
		t.Fatalf("b's own store lacks the missed write after delivery: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
