package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

// states returns the member states n's ring shows.
func states(n *node) (map[string]string, error) {
	resp, err := joinHTTP.Get("http://" + n.http + "/v1/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st httpapi.ClusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range st.Members {
		out[m.ID] = m.State
	}
	return out, nil
}

// TestDecommissionStreamsDataWithoutLosingWrites: a fresh four-node
// cluster holds a few thousand keys; `ringkv decommission n1` (the real
// command, through n2) runs while a writer keeps writing new keys at
// W=QUORUM through n2..n4, and returns once n1 has left. Then n1 is
// stopped, n2 is killed, and every acknowledged key still reads back
// through n4 at R=1: with N=3 on the three nodes that stay, n3 or n4 holds
// every key only if the partitions n1 replicated reached their next
// owners, and the writes made during the move too.
func TestDecommissionStreamsDataWithoutLosingWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	nodes := startClusterOf(t, 4)
	waitFor(t, 30*time.Second, "four normal members everywhere", func() bool {
		for _, n := range nodes {
			st, err := states(n)
			if err != nil || len(st) != 4 {
				return false
			}
			for _, s := range st {
				if s != "normal" {
					return false
				}
			}
		}
		return true
	})
	var acked sync.Map
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 3000; i += 16 {
				k := fmt.Sprintf("pre-%d", i)
				if putKey(nodes[i%4], k) {
					acked.Store(k, true)
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

	ctx, stopWriter := context.WithCancel(context.Background())
	var ackedLive atomic.Int64
	var writers sync.WaitGroup
	for w := range 3 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("live-%d-%d", w, i)
				if putKey(nodes[1+(w+i)%3], k) {
					acked.Store(k, true)
					ackedLive.Add(1)
				}
			}
		}()
	}
	defer stopWriter()
	time.Sleep(300 * time.Millisecond)

	cctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, ringkvBinary(t), "decommission", "n1", "--addr", nodes[1].http, "--interval", "200ms")
	out, err := cmd.CombinedOutput()
	t.Logf("ringkv decommission n1:\n%s", out)
	if err != nil {
		t.Fatalf("ringkv decommission: %v", err)
	}
	if !strings.Contains(string(out), "n1 has left the ring") || !strings.Contains(string(out), "partitions") {
		t.Fatalf("decommission output shows no progress or no end")
	}
	time.Sleep(300 * time.Millisecond)
	stopWriter()
	writers.Wait()
	if ackedLive.Load() < 50 {
		t.Fatalf("only %d writes during the decommission were acknowledged", ackedLive.Load())
	}
	for _, n := range nodes[1:] {
		st, err := states(n)
		if err != nil || st["n1"] != "left" {
			t.Fatalf("%s sees n1 as %q (%v)", n.id, st["n1"], err)
		}
	}

	nodes[0].kill()
	nodes[1].kill()
	waitFor(t, 20*time.Second, "n4 sees n1 and n2 down", func() bool { return alive(t, nodes[3]) == 2 })
	var missing []string
	total := 0
	acked.Range(func(k, _ any) bool {
		total++
		code, err := getKey(nodes[3], k.(string), "r=1")
		if err != nil || code != http.StatusOK {
			missing = append(missing, fmt.Sprintf("%s (%d %v)", k, code, err))
		}
		return len(missing) < 20
	})
	if len(missing) > 0 {
		t.Fatalf("acknowledged keys not read back through n4 at r=1 after n1 left and n2 was killed: %v", missing)
	}
	t.Logf("%d acknowledged keys (%d written during the decommission) all read back through n4", total, ackedLive.Load())
}
