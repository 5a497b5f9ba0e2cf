package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A node that cannot start says why and releases what it opened (the data
// directory can be used again at once).
func TestStartFailureIsAnErrorNotAPanic(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	peerAddr := freePeerAddr(t)
	dir := t.TempDir()
	cfg := Config{NodeID: "n1", DataDir: dir, PeerAddr: peerAddr, RespAddr: busy.Addr().String(), Replicas: 1}
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "resp listener") {
		t.Fatalf("start with a busy RESP port: %v", err)
	}
	cfg.RespAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("start after a failed start on the same data directory: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGossipAddr(t *testing.T) {
	if g, err := GossipAddr("127.0.0.1:7000"); err != nil || g != "127.0.0.1:7001" {
		t.Fatalf("GossipAddr: %q %v", g, err)
	}
	for _, bad := range []string{"nope", "127.0.0.1:x", "127.0.0.1:65535"} {
		if _, err := GossipAddr(bad); err == nil {
			t.Errorf("GossipAddr(%q) accepted", bad)
		}
	}
}

// Oversized keys and values get a clear error over both APIs, and nothing is
// stored; the connection stays usable.
func TestClientLimitsOnBothAPIs(t *testing.T) {
	peerAddr := freePeerAddr(t)
	s, err := Start(Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: peerAddr,
		RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Replicas: 1,
		MaxKeySize: 16, MaxValueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: s.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	longKey := strings.Repeat("k", 17)
	if err := rc.Set(ctx, longKey, "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "key too large") {
		t.Fatalf("SET with a 17-byte key: %v", err)
	}
	if err := rc.Set(ctx, "k", strings.Repeat("v", 65), 0).Err(); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("SET with a 65-byte value: %v", err)
	}
	if err := rc.Set(ctx, "k", "ok", 0).Err(); err != nil {
		t.Fatalf("SET after refused ones: %v", err)
	}
	if got, err := rc.Get(ctx, "k").Result(); err != nil || got != "ok" {
		t.Fatalf("GET k: %q %v", got, err)
	}
	// A pipeline of SETs goes to the coordinator as batches: the refused
	// key in the middle gets its error, its neighbours are stored.
	pipe := rc.Pipeline()
	var sets []*redis.StatusCmd
	for i := range 20 {
		key := fmt.Sprintf("p%d", i)
		if i == 7 {
			key = longKey
		}
		sets = append(sets, pipe.Set(ctx, key, fmt.Sprintf("v%d", i), 0))
	}
	pipe.Exec(ctx)
	for i, c := range sets {
		if i == 7 {
			if err := c.Err(); err == nil || !strings.Contains(err.Error(), "key too large") {
				t.Fatalf("pipelined SET with a 17-byte key: %v", err)
			}
			continue
		}
		if err := c.Err(); err != nil {
			t.Fatalf("pipelined SET %d: %v", i, err)
		}
		if got, err := rc.Get(ctx, fmt.Sprintf("p%d", i)).Result(); err != nil || got != fmt.Sprintf("v%d", i) {
			t.Fatalf("GET p%d after a pipelined SET: %q %v", i, got, err)
		}
	}
	for _, c := range []struct {
		key, body string
		want      int
	}{{longKey, "v", http.StatusBadRequest}, {"k2", strings.Repeat("v", 65), http.StatusRequestEntityTooLarge}} {
		req, _ := http.NewRequest(http.MethodPut, "http://"+s.HTTPAddr()+"/v1/kv/"+c.key, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("PUT key of %d bytes, value of %d bytes: status %d, want %d", len(c.key), len(c.body), resp.StatusCode, c.want)
		}
	}
	if n := rc.Exists(ctx, "k2").Val(); n != 0 {
		t.Fatalf("refused PUT stored k2")
	}
}

func TestParseReplicasPerDC(t *testing.T) {
	got, err := ParseReplicasPerDC(" dc1:3, dc2:2 ,dc3:0")
	if err != nil || len(got) != 3 || got["dc1"] != 3 || got["dc2"] != 2 || got["dc3"] != 0 {
		t.Fatalf("ParseReplicasPerDC: %v %v", got, err)
	}
	for _, bad := range []string{"", "dc1", "dc1:", ":3", "dc1:x", "dc1:-1", "dc1:1,dc1:2", "dc1:1,,dc2:1"} {
		if _, err := ParseReplicasPerDC(bad); err == nil {
			t.Errorf("ParseReplicasPerDC(%q) accepted", bad)
		}
	}
}

// freePeerAddr returns 127.0.0.1:p where p (peer RPCs) and p+1 (gossip,
// TCP and UDP) were free a moment ago: a port free for TCP alone often
// had its neighbour taken when packages ran in parallel.
func freePeerAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= 65000 {
			continue
		}
		ok := true
		for _, port := range []int{p, p + 1} {
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			tl, err := net.Listen("tcp", addr)
			if err != nil {
				ok = false
				break
			}
			ul, err := net.ListenPacket("udp", addr)
			tl.Close()
			if err != nil {
				ok = false
				break
			}
			ul.Close()
		}
		if ok {
			return fmt.Sprintf("127.0.0.1:%d", p)
		}
	}
	t.Fatal("no free pair of ports")
	return ""
}

// A multi-DC cluster starts one node at a time: the first node of dc1,
// with counts naming a dc2 that has no members yet, starts; a write at the
// default QUORUM (2 of N=2) is refused with an error naming the replicas
// needed and placed, since one copy is not what QUORUM promises; once a
// dc2 node joins, every key's preference list holds it too and writes go
// through.
func TestMultiDCClusterStartsOneNodeAtATime(t *testing.T) {
	perDC := map[string]int{"dc1": 1, "dc2": 1}
	start := func(id, dc string, join ...string) *Server {
		s, err := Start(Config{NodeID: id, DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
			RespAddr: "127.0.0.1:0", HTTPAddr: "", DC: dc, Replicas: 2, ReplicasPerDC: perDC,
			Partitions: 64, Join: join})
		if err != nil {
			t.Fatalf("start %s in %s: %v", id, dc, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := start("a", "dc1")
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: a.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	err := rc.Set(ctx, "k", "v1", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "needs 2 replicas but the ring places 1") {
		t.Fatalf("SET at QUORUM on the only node of a two-DC layout: err = %v, want a refusal naming 2 needed and 1 placed", err)
	}
	// INFO tells N and the replicas a key has now; the default quorums
	// count against N, as requests do.
	infoCluster := func() string {
		info, err := rc.Info(ctx, "cluster").Result()
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	if info := infoCluster(); !strings.Contains(info, "replicas:2\r\n") || !strings.Contains(info, "replicas_placed:1\r\n") ||
		!strings.Contains(info, "default_w:2\r\n") {
		t.Fatalf("INFO cluster with dc2 empty, want replicas:2, replicas_placed:1, default_w:2:\n%s", info)
	}
	b := start("b", "dc2", a.cfg.PeerAddr)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := a.Membership().Ring()
		both := true
		for p := range r.Partitions() {
			both = both && len(r.Preference(p)) == 2
		}
		if both {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dc2's node %s never entered the preference lists: partition 0 has %v", "b", r.Preference(0))
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = b
	if err := rc.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatalf("SET with both DCs present: %v", err)
	}
	if got, err := rc.Get(ctx, "k").Result(); err != nil || got != "v2" {
		t.Fatalf("GET k: %q %v", got, err)
	}
	if info := infoCluster(); !strings.Contains(info, "replicas_placed:2\r\n") || !strings.Contains(info, "default_w:2\r\n") {
		t.Fatalf("INFO cluster with both DCs present, want replicas_placed:2, default_w:2:\n%s", info)
	}
}

// Two nodes never run on one data directory: the second start is refused
// (they would share the engine's files and mint the same dots), and the
// directory is free again once the first node stops.
func TestDataDirectoryIsLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := func(id string) Config {
		return Config{NodeID: id, DataDir: dir, PeerAddr: freePeerAddr(t), Replicas: 1, Partitions: 64}
	}
	a, err := Start(cfg("a"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := Start(cfg("a")); err == nil || !strings.Contains(err.Error(), "in use by another ringkv process") {
		if b != nil {
			b.Close()
		}
		t.Fatalf("second start on the same data directory: err = %v, want a refusal", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Start(cfg("a"))
	if err != nil {
		t.Fatalf("start after the first node stopped: %v", err)
	}
	c.Close()
}
