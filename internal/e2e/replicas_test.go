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

	"github.com/ringkv/ringkv/server"
)

// TestSetReplicasStreamsTheExtraReplicas: four nodes at N=2 hold a few
// thousand keys; `ringkv set-replicas 3` runs while a writer keeps writing
// new keys, and returns once the ring uses N=3. Then n1 and n2 are killed,
// and every acknowledged key still reads back through n4 at R=1: at N=2
// some keys lived only on n1 and n2; at N=3 each key misses one node of
// four, so n3 or n4 holds it, if the third replicas were streamed.
func TestSetReplicasStreamsTheExtraReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	nodes := startClusterOf(t, 4, "--replicas", "2")
	waitFor(t, 30*time.Second, "four normal members everywhere", func() bool {
		for _, n := range nodes {
			st, err := states(n)
			if err != nil || len(st) != 4 || strings.Count(fmt.Sprint(st), "normal") != 4 {
				return false
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
			for i := w; i < 2000; i += 16 {
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
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("live-%d-%d", w, i)
				if putKey(nodes[(w+i)%4], k) {
					acked.Store(k, true)
					ackedLive.Add(1)
				}
			}
		}()
	}
	defer stopWriter()
	time.Sleep(200 * time.Millisecond)

	cctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, ringkvBinary(t), "set-replicas", "3", "--addr", nodes[1].http, "--interval", "200ms").CombinedOutput()
	t.Logf("ringkv set-replicas 3:\n%s", out)
	if err != nil || !strings.Contains(string(out), "replication is now 3") {
		t.Fatalf("ringkv set-replicas: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	stopWriter()
	writers.Wait()
	for _, n := range nodes {
		resp, err := joinHTTP.Get("http://" + n.http + "/v1/replicas")
		if err != nil {
			t.Fatal(err)
		}
		var rep server.ReplicasReply
		json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if rep.Replicas != "3" || rep.Next != "" {
			t.Fatalf("%s: replication %+v", n.id, rep)
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
		t.Fatalf("acknowledged keys not read back through n4 at r=1 after N went to 3 and n1, n2 died: %v", missing)
	}
	t.Logf("%d acknowledged keys (%d written during the change) all read back through n4", total, ackedLive.Load())
}
