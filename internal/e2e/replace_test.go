package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplaceDeadNode: three nodes hold a few thousand keys; n3 dies for
// good, and n4 starts with --replace n3. Once n4 is normal and n3 left,
// n1 is killed too, and every key still reads back through n4 at R=1: n4
// holds every key only if it got n3's partitions from the survivors.
func TestReplaceDeadNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	nodes := startCluster(t)
	var keys []string
	var wg sync.WaitGroup
	var failed atomic.Int64
	var mu sync.Mutex
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 2000; i += 16 {
				k := fmt.Sprintf("rk-%d", i)
				if putKey(nodes[i%3], k) {
					mu.Lock()
					keys = append(keys, k)
					mu.Unlock()
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d preload writes failed on a healthy cluster", failed.Load())
	}
	// Replacing a member that is up is refused before the new node
	// announces itself: it leaves no trace in the cluster.
	bad := exec.Command(ringkvBinary(t), "server", "--node-id", "n5", "--data-dir", t.TempDir(),
		"--resp-addr", "127.0.0.15:0", "--http-addr", "127.0.0.15:0", "--peer-addr", fmt.Sprintf("127.0.0.15:%d", freePort(t, "127.0.0.15")),
		"--join", nodes[0].peer, "--replace", "n2")
	out, err := bad.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "it is up") {
		t.Fatalf("--replace of a live member: %v\n%s", err, out)
	}
	if st, err := states(nodes[0]); err != nil || st["n5"] != "" {
		t.Fatalf("the refused replacement is in the ring: %v %v", st, err)
	}

	nodes[2].kill()
	waitFor(t, 20*time.Second, "n1 sees n3 down", func() bool { return alive(t, nodes[0]) == 2 })

	ip := "127.0.0.14"
	n4 := &node{
		id: "n4", dir: t.TempDir(),
		resp: fmt.Sprintf("%s:%d", ip, freePort(t, ip)), http: fmt.Sprintf("%s:%d", ip, freePort(t, ip)),
		peer: fmt.Sprintf("%s:%d", ip, freePort(t, ip)), join: nodes[0].peer, extra: []string{"--replace", "n3"},
		log: &strings.Builder{}, logMu: &sync.Mutex{},
	}
	t.Cleanup(func() {
		n4.kill()
		if t.Failed() {
			t.Logf("--- log of n4 ---\n%s", n4.logs())
		}
	})
	n4.start(t, ringkvBinary(t))
	waitFor(t, 60*time.Second, "n4 normal and n3 left on n1", func() bool {
		st, err := states(nodes[0])
		return err == nil && st["n4"] == "normal" && st["n3"] == "left"
	})
	nodes[0].kill()
	waitFor(t, 20*time.Second, "n4 sees n1 down", func() bool { return alive(t, n4) == 2 })
	var missing []string
	for _, k := range keys {
		code, err := getKey(n4, k, "r=1")
		if err != nil || code != http.StatusOK {
			missing = append(missing, fmt.Sprintf("%s (%d %v)", k, code, err))
			if len(missing) >= 20 {
				break
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("keys not read back through n4 at r=1 after it replaced n3 and n1 died: %v", missing)
	}
	t.Logf("%d keys read back through n4, which replaced n3", len(keys))
}
