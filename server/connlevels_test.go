package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RINGKV.CONFIG SET gives one Redis connection its own R, W, PR and PW;
// other connections keep the node's defaults. Two nodes, N=2, one of them
// stopped: the default W=QUORUM (2) cannot be met, W=1 can, and PW=2 is
// refused with a QUORUM error naming pw.
func TestRingkvConfigSetsLevelsPerConnection(t *testing.T) {
	cfg := func(id, peer string, join ...string) Config {
		return Config{NodeID: id, DataDir: t.TempDir(), PeerAddr: peer, RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Replicas: 2, Partitions: 64, Join: join, RequestTimeout: 300 * time.Millisecond}
	}
	aPeer, bPeer := freePeerAddr(t), freePeerAddr(t)
	a, err := Start(cfg("a", aPeer))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(cfg("b", bPeer, aPeer))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b alive", func() bool { return a.Membership().Alive("b") })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees b down", func() bool { return !a.Membership().Alive("b") })

	ctx := context.Background()
	// Settings belong to one connection: a pooled client keeps them on a
	// dedicated one (go-redis sends Client pipelines on another pool).
	rc := redis.NewClient(&redis.Options{Addr: a.RespAddr(), MaxRetries: -1, ReadTimeout: 5 * time.Second})
	defer rc.Close()
	plain, tuned := rc.Conn(), rc.Conn()
	defer plain.Close()
	defer tuned.Close()
	get := func(rc *redis.Conn, name string) string {
		t.Helper()
		v, err := rc.Do(ctx, "RINGKV.CONFIG", "GET", name).Text()
		if err != nil {
			t.Fatalf("RINGKV.CONFIG GET %s: %v", name, err)
		}
		return v
	}
	set := func(rc *redis.Conn, name, value string) error {
		return rc.Do(ctx, "RINGKV.CONFIG", "SET", name, value).Err()
	}
	for name, want := range map[string]string{"r": "QUORUM", "w": "QUORUM", "pr": "0", "pw": "0"} {
		if got := get(tuned, name); got != want {
			t.Fatalf("default %s = %q, want %q", name, got, want)
		}
	}

	if err := plain.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "QUORUM") {
		t.Fatalf("SET at the default W=QUORUM with one of two nodes up: %v, want a QUORUM error", err)
	}
	if err := set(tuned, "w", "1"); err != nil {
		t.Fatalf("RINGKV.CONFIG SET w 1: %v", err)
	}
	if err := set(tuned, "r", "one"); err != nil {
		t.Fatalf("RINGKV.CONFIG SET r one: %v", err)
	}
	if got := get(tuned, "w"); got != "1" {
		t.Fatalf("w after SET: %q", got)
	}
	if got := get(tuned, "r"); got != "ONE" {
		t.Fatalf("r after SET: %q", got)
	}
	if err := tuned.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET at W=1: %v", err)
	}
	// A pipeline of SETs (one batch to the coordinator) and GETs too.
	pipe := tuned.Pipeline()
	setCmd := pipe.Set(ctx, "k2", "v2", 0)
	getCmd := pipe.Get(ctx, "k")
	pipe.Exec(ctx)
	if setCmd.Err() != nil || getCmd.Val() != "v" {
		t.Fatalf("pipelined SET and GET at W=1, R=1: %v, %q %v", setCmd.Err(), getCmd.Val(), getCmd.Err())
	}
	if got, err := tuned.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET at R=1: %q %v", got, err)
	}
	if err := plain.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "QUORUM") {
		t.Fatalf("GET at the default R=QUORUM on another connection: %v, want a QUORUM error", err)
	}

	if err := set(tuned, "pw", "2"); err != nil {
		t.Fatalf("RINGKV.CONFIG SET pw 2: %v", err)
	}
	err = tuned.Set(ctx, "k", "strict", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "QUORUM") || !strings.Contains(err.Error(), "pw") {
		t.Fatalf("SET at PW=2 with one primary up: %v, want a QUORUM error naming pw", err)
	}
	if err := set(tuned, "pw", "0"); err != nil || get(tuned, "pw") != "0" {
		t.Fatalf("RINGKV.CONFIG SET pw 0: %v, now %q", err, get(tuned, "pw"))
	}

	for _, bad := range [][]string{{"w", "0"}, {"w", "3"}, {"r", "many"}, {"x", "1"}} {
		if err := set(tuned, bad[0], bad[1]); err == nil || !strings.HasPrefix(err.Error(), "ERR") {
			t.Fatalf("RINGKV.CONFIG SET %s %s: %v, want an ERR", bad[0], bad[1], err)
		}
	}
	if err := set(tuned, "w", "default"); err != nil || get(tuned, "w") != "QUORUM" {
		t.Fatalf("RINGKV.CONFIG SET w default: %v, now %q", err, get(tuned, "w"))
	}
	if err := tuned.Do(ctx, "RESET").Err(); err != nil {
		t.Fatal(err)
	}
	if got := get(tuned, "r"); got != "QUORUM" {
		t.Fatalf("r after RESET: %q, want the default", got)
	}
}
