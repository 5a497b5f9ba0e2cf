package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/server"
)

var joinHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// putKey writes key at W=QUORUM through n and reports whether the write was
// acknowledged.
func putKey(n *node, key string) bool {
	req, err := http.NewRequest(http.MethodPut, "http://"+n.http+"/v1/kv/"+key+"?w=quorum", strings.NewReader("v-"+key))
	if err != nil {
		return false
	}
	resp, err := joinHTTP.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

// getKey reads key through n at the levels of query and returns the HTTP
// status.
func getKey(n *node, key, query string) (int, error) {
	resp, err := joinHTTP.Get("http://" + n.http + "/v1/kv/" + key + "?" + query)
	if err != nil {
		return 0, err
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func transfers(n *node) (server.TransfersStatus, error) {
	var st server.TransfersStatus
	resp, err := joinHTTP.Get("http://" + n.http + "/v1/transfers")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestJoinStreamsDataWithoutLosingWrites: three nodes hold a few thousand
// keys; a fourth joins while a writer keeps writing new keys at W=QUORUM.
// Once the fourth is normal, two of the original three are killed, and
// every acknowledged key still reads back through the new node at R=1
// (where it does not replicate a key, its own not-found must not count):
// with N=3 on four nodes each key misses one node, so the new node or the
// last original holds it, and the new node holds every key it replicates
// only if its stream and the writes sent to it as a pending owner missed
// nothing.
func TestJoinStreamsDataWithoutLosingWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	nodes := startCluster(t)
	var acked sync.Map
	// Preload.
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 3000; i += 16 {
				k := fmt.Sprintf("pre-%d", i)
				if putKey(nodes[i%3], k) {
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

	// The writer: unique keys, through the original nodes, all along.
	ctx, stopWriter := context.WithCancel(context.Background())
	var written, ackedLive atomic.Int64
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("live-%d-%d", w, i)
				written.Add(1)
				if putKey(nodes[(w+i)%3], k) {
					acked.Store(k, true)
					ackedLive.Add(1)
				}
			}
		}()
	}
	defer stopWriter()

	time.Sleep(300 * time.Millisecond)
	ip := "127.0.0.14"
	n4 := &node{
		id: "n4", dir: t.TempDir(),
		resp: fmt.Sprintf("%s:%d", ip, freePort(t, ip)), http: fmt.Sprintf("%s:%d", ip, freePort(t, ip)),
		peer: fmt.Sprintf("%s:%d", ip, freePort(t, ip)), join: nodes[0].peer,
		log: &strings.Builder{}, logMu: &sync.Mutex{},
	}
	t.Cleanup(func() {
		n4.kill()
		if t.Failed() {
			t.Logf("--- log of n4 ---\n%s", n4.logs())
		}
	})
	n4.start(t, ringkvBinary(t))

	sawJoining, sawProgress := false, false
	var last server.TransfersStatus
	waitFor(t, 60*time.Second, "n4 normal", func() bool {
		st, err := transfers(n4)
		if err != nil {
			return false
		}
		last = st
		if st.State == "joining" {
			sawJoining = true
		}
		for _, tr := range st.Transfers {
			if tr.Kind == "join" && tr.PartitionsTotal > 0 && tr.PartitionsDone > 0 && tr.Bytes > 0 {
				sawProgress = true
			}
		}
		return st.State == "normal"
	})
	if !sawJoining || !sawProgress {
		t.Fatalf("n4 joined without a visible move (saw joining %v, progress %v): %+v", sawJoining, sawProgress, last)
	}
	var move rebalance.Transfer
	for _, tr := range last.Transfers {
		if tr.Kind == "join" && tr.Node == "n4" {
			move = tr
		}
	}
	if move.State != "done" || move.PartitionsTotal == 0 || move.PartitionsDone != move.PartitionsTotal {
		t.Fatalf("transfers once normal: %+v", last)
	}
	// Writes go on a moment with n4 an owner, then stop.
	time.Sleep(500 * time.Millisecond)
	stopWriter()
	writers.Wait()
	if ackedLive.Load() < 50 {
		t.Fatalf("only %d of %d writes during the join were acknowledged", ackedLive.Load(), written.Load())
	}

	var ms []ring.Member
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		ms = append(ms, ring.Member{ID: id, State: ring.StateNormal})
	}
	final, err := ring.New(ring.Config{Partitions: 1024, Replicas: 3}, ms)
	if err != nil {
		t.Fatal(err)
	}
	nodes[0].kill()
	nodes[1].kill()
	waitFor(t, 20*time.Second, "n4 sees n1 and n2 down", func() bool { return alive(t, n4) == 2 })
	var missing []string
	total := 0
	acked.Range(func(k, _ any) bool {
		total++
		// Plain R=1: where n4 replicates the key its own copy answers;
		// where it does not, n3 alone holds it, and n4 stands in for n1
		// and n2 as a fallback whose not-found must not count while n3
		// answers.
		query := "r=1"
		code, err := getKey(n4, k.(string), query)
		if err != nil || code != http.StatusOK {
			missing = append(missing, fmt.Sprintf("%s (%d %v, replicas %v)", k, code, err, final.PreferenceForKey([]byte(k.(string)))))
		}
		return len(missing) < 20
	})
	if len(missing) > 0 {
		t.Fatalf("acknowledged keys not read back through n4 at r=1 after killing n1 and n2: %v", missing)
	}
	t.Logf("%d acknowledged keys (%d written during the join) all read back through the new node; the move: %+v", total, ackedLive.Load(), move)
}
