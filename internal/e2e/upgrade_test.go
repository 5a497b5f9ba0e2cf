package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// previousBinary builds cmd/ringkv from the commit before HEAD (or from
// RINGKV_UPGRADE_FROM, any git revision) in a temporary worktree. It skips
// the test, saying why, where git or the history is missing.
func previousBinary(t *testing.T) (bin, rev string) {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed: cannot build the previous commit's binary")
	}
	rev = os.Getenv("RINGKV_UPGRADE_FROM")
	if rev == "" {
		rev = "HEAD~1"
	}
	top, err := exec.Command(git, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout (%v): cannot build the previous commit's binary", err)
	}
	repo := strings.TrimSpace(string(top))
	full, err := exec.Command(git, "-C", repo, "rev-parse", "--verify", rev+"^{commit}").Output()
	if err != nil {
		t.Skipf("no revision %s in this checkout (a shallow clone?): %v", rev, err)
	}
	sha := strings.TrimSpace(string(full))
	// A commit that does not build (work committed in pieces) is passed
	// over for its parent, at most a few times, saying so.
	for range 3 {
		dir := filepath.Join(t.TempDir(), "previous")
		if out, err := exec.Command(git, "-C", repo, "worktree", "add", "--detach", dir, sha).CombinedOutput(); err != nil {
			t.Fatalf("git worktree add %s: %v\n%s", sha, err, out)
		}
		t.Cleanup(func() { exec.Command(git, "-C", repo, "worktree", "remove", "--force", dir).Run() })
		bin = filepath.Join(t.TempDir(), "ringkv-previous")
		build := exec.Command("go", "build", "-o", bin, "./cmd/ringkv")
		build.Dir = dir
		start := time.Now()
		out, err := build.CombinedOutput()
		if err == nil {
			t.Logf("built the binary of %s (%s) in %v", rev, sha[:12], time.Since(start).Round(time.Second))
			return bin, sha[:12]
		}
		t.Logf("commit %s does not build (%v): trying its parent\n%s", sha[:12], err, out)
		parent, perr := exec.Command(git, "-C", repo, "rev-parse", "--verify", sha+"~1").Output()
		if perr != nil {
			t.Skipf("no buildable commit before HEAD within reach: %v", perr)
		}
		sha, rev = strings.TrimSpace(string(parent)), sha[:12]+"~1"
	}
	t.Fatalf("three commits in a row before HEAD do not build")
	return "", ""
}

// TestRollingUpgradeFromThePreviousCommit: three nodes of the previous
// commit's binary take a write load at W=2; one at a time each is stopped
// (SIGTERM) and started again on its data directory with this commit's
// binary, so the cluster runs mixed versions throughout. Requests go to
// the nodes that are up: none may fail. At the end every acknowledged
// write reads back at R=2 through each node.
func TestRollingUpgradeFromThePreviousCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries and starts processes; skipped with -short")
	}
	oldBin, rev := previousBinary(t)
	newBin := ringkvBinary(t)
	nodes := startClusterWith(t, oldBin, 3)

	var down sync.Map // node id -> true while restarting
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clients := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.resp, MaxRetries: -1, PoolSize: 4,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error {
				return cn.Do(ctx, "RINGKV.CONFIG", "SET", "w", "2").Err()
			}})
		defer clients[i].Close()
	}
	var mu sync.Mutex
	acked := map[string]string{} // key -> last acknowledged value
	// maybe holds, per key, the values of writes after its last
	// acknowledged one whose outcome is unknown (an error from a node
	// going down, a request cut off at the end): a read may see them.
	maybe := map[string][]string{}
	var ops, failed atomic.Int64
	var failures []string
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for seq := 0; ctx.Err() == nil; seq++ {
				i := rng.Intn(len(nodes))
				if _, isDown := down.Load(nodes[i].id); isDown {
					continue
				}
				key := fmt.Sprintf("w%d-k%d", w, rng.Intn(200))
				val := fmt.Sprintf("%d-%d", w, seq)
				// A node about to stop may still take the request: only a
				// node marked down before the request began is skipped.
				err := clients[i].Set(ctx, key, val, 0).Err()
				mu.Lock()
				if err != nil {
					maybe[key] = append(maybe[key], val)
				} else {
					// Recorded before the end is checked: the last write
					// may be acknowledged just as the load stops.
					acked[key] = val
					delete(maybe, key)
				}
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
				ops.Add(1)
				if err != nil {
					if _, isDown := down.Load(nodes[i].id); isDown {
						continue // it went down meanwhile: not a node that stays
					}
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("SET %s via %s: %v", key, nodes[i].id, err))
					mu.Unlock()
					continue
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		down.Store(n.id, true)
		time.Sleep(200 * time.Millisecond) // requests already sent to it finish
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		n.cmd.Wait()
		n.cmd = nil
		n.start(t, newBin)
		waitFor(t, 30*time.Second, n.id+" back, on the new binary, and seeing three members alive", func() bool {
			return alive(t, n) == 3
		})
		down.Delete(n.id)
		t.Logf("%s upgraded from %s; %d operations so far, %d failed", n.id, rev, ops.Load(), failed.Load())
		time.Sleep(2 * time.Second) // mixed versions under load
	}
	cancel()
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d requests to nodes that stayed up failed; first: %s", f, ops.Load(), failures[0])
	}
	if ops.Load() < 100 {
		t.Fatalf("only %d operations ran: the load did not run through the upgrade", ops.Load())
	}
	rctx := context.Background()
	for i, c := range clients {
		if err := c.Do(rctx, "RINGKV.CONFIG", "SET", "r", "2").Err(); err != nil {
			t.Fatal(err)
		}
		for key, want := range acked {
			got, err := c.Get(rctx, key).Result()
			if err != nil || got != want && !slices.Contains(maybe[key], got) {
				t.Fatalf("after the upgrade, GET %s via %s at R=2: %q %v, want the last acknowledged %q (or one of the later writes of unknown outcome %v)", key, nodes[i].id, got, err, want, maybe[key])
			}
		}
	}
	t.Logf("rolling upgrade from %s: %d writes at W=2, none failed; %d keys read back through every node", rev, ops.Load(), len(acked))
}
