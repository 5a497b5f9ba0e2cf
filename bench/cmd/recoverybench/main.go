// Command recoverybench measures how long a node that was down while keys
// were written takes to be complete again after it returns: three `ringkv
// server` processes on 127.0.0.1 (N=3, W=QUORUM), one killed (kill -9),
// -keys keys written through another over -down, the node restarted, and
// the time from its restart until
//
//   - hints: the two other nodes report no hint pending for it (run with
//     anti-entropy off, --repair-interval -1s), or
//   - anti-entropy: it reports every partition it shares with each other
//     node verified since its restart (run with hints refused,
//     --hint-max-bytes 1).
//
// Then the cluster is stopped and the returned node's engine is compared
// with a survivor's, key by key, offline: the run fails unless it holds
// every key. Nothing reads the keys while the node catches up (a read
// would repair them).
//
//	go run ./cmd/recoverybench -bin PATH-TO-ringkv [-keys 50000] [-down 60s] [-mode hints|ae|both]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/storage"
)

type node struct {
	id, dir          string
	resp, http, peer string
	join             string
	cmd              *exec.Cmd
}

var bin = flag.String("bin", "", "the ringkv binary (required)")

func freeAddr() string {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		addr := l.Addr().(*net.TCPAddr)
		l.Close()
		// The gossip port is the peer port + 1: it must be free too.
		if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", addr.Port+1)); err == nil {
			l2.Close()
			return addr.String()
		}
	}
}

func (n *node) start(extra []string) {
	args := append([]string{"server", "--node-id", n.id, "--data-dir", n.dir, "--resp-addr", n.resp,
		"--http-addr", n.http, "--peer-addr", n.peer, "--replicas", "3", "--quiet"}, extra...)
	if n.join != "" {
		args = append(args, "--join", n.join)
	}
	n.cmd = exec.Command(*bin, args...)
	n.cmd.Stderr = os.Stderr
	if err := n.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + n.http + "/healthz"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			log.Fatalf("%s did not start", n.id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *node) kill() {
	if n.cmd != nil {
		n.cmd.Process.Signal(syscall.SIGKILL)
		n.cmd.Wait()
		n.cmd = nil
	}
}

type member struct {
	ID                   string `json:"id"`
	Alive                bool   `json:"alive"`
	HintsPending         int    `json:"hints_pending"`
	RepairShared         int    `json:"repair_shared"`
	RepairUnverified     int    `json:"repair_unverified"`
	RepairOldestVerified string `json:"repair_oldest_verified"`
}

func members(n *node) map[string]member {
	resp, err := http.Get("http://" + n.http + "/v1/cluster")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st struct {
		Members []member `json:"members"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	out := map[string]member{}
	for _, m := range st.Members {
		out[m.ID] = m
	}
	return out
}

func run(mode string, keys int, down time.Duration) time.Duration {
	root, err := os.MkdirTemp("", "recoverybench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	var extra []string
	switch mode {
	case "hints":
		extra = []string{"--repair-interval", "-1s"}
	case "ae":
		extra = []string{"--hint-max-bytes", "1"}
	}
	var nodes []*node
	for i := range 3 {
		n := &node{id: fmt.Sprintf("n%d", i+1), dir: filepath.Join(root, fmt.Sprint(i)), resp: freeAddr(), http: freeAddr(), peer: freeAddr()}
		if i > 0 {
			n.join = nodes[0].peer
		}
		nodes = append(nodes, n)
	}
	defer func() {
		for _, n := range nodes {
			n.kill()
		}
	}()
	for _, n := range nodes {
		n.start(extra)
	}
	waitFor(30*time.Second, "three members alive", func() bool {
		for _, n := range nodes {
			alive := 0
			for _, m := range members(n) {
				if m.Alive {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	victim := nodes[2]
	victim.kill()
	waitFor(30*time.Second, "the victim seen down", func() bool { return !members(nodes[0])["n3"].Alive })

	rc := redis.NewClient(&redis.Options{Addr: nodes[0].resp, MaxRetries: -1, PoolSize: 16})
	defer rc.Close()
	ctx := context.Background()
	start := time.Now()
	const batch = 100
	for i := 0; i < keys; i += batch {
		pipe := rc.Pipeline()
		for j := i; j < min(i+batch, keys); j++ {
			pipe.Set(ctx, fmt.Sprintf("key:%08d", j), fmt.Sprintf("value-%d-%0100d", j, 0), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			log.Fatalf("writes: %v", err)
		}
		// Spread the writes over the downtime.
		if want := time.Duration(float64(down) * float64(i+batch) / float64(keys)); time.Since(start) < want {
			time.Sleep(want - time.Since(start))
		}
	}
	if d := down - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	restarted := time.Now()
	victim.start(extra)
	waitFor(10*time.Minute, "the returned node complete", func() bool {
		switch mode {
		case "hints":
			for _, n := range nodes[:2] {
				m, ok := members(n)["n3"]
				if !ok || !m.Alive || m.HintsPending != 0 {
					return false
				}
			}
			return true
		default:
			ms := members(victim)
			for _, id := range []string{"n1", "n2"} {
				m, ok := ms[id]
				if !ok || m.RepairShared == 0 || m.RepairUnverified != 0 {
					return false
				}
			}
			return true
		}
	})
	took := time.Since(restarted)
	for _, n := range nodes {
		n.kill()
	}
	want, got := contents(nodes[0].dir), contents(victim.dir)
	if len(want) != keys {
		log.Fatalf("%s holds %d keys, want %d", nodes[0].id, len(want), keys)
	}
	for k, v := range want {
		if got[k] != v {
			log.Fatalf("%s: the returned node is not complete after %v: key %q differs", mode, took, k)
		}
	}
	return took
}

func contents(dir string) map[string]string {
	db, err := storage.Open(filepath.Join(dir, "engine"), &storage.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	out := map[string]string{}
	if err := replica.New(db, "reader").Scan(0, ^uint64(0), func(e replica.Entry) bool {
		out[string(e.Key)] = string(e.Object.Encode(nil))
		return true
	}); err != nil {
		log.Fatal(err)
	}
	return out
}

func waitFor(d time.Duration, what string, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			log.Fatalf("timed out: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func main() {
	keys := flag.Int("keys", 50000, "keys written while the node is down")
	down := flag.Duration("down", 60*time.Second, "how long the node is down")
	mode := flag.String("mode", "both", "hints, ae or both")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-bin is required (go build -o /tmp/ringkv ./cmd/ringkv in the main module)")
	}
	modes := []string{*mode}
	if *mode == "both" {
		modes = []string{"hints", "ae"}
	}
	fmt.Printf("| catch-up by | keys written while down | down for | complete after restart |\n|---|--:|--:|--:|\n")
	for _, m := range modes {
		took := run(m, *keys, *down)
		fmt.Printf("| %s | %d | %v | %v |\n", m, *keys, *down, took.Round(10*time.Millisecond))
	}
}
