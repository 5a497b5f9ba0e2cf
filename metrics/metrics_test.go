package metrics

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/storage"
)

func scrape(t *testing.T, r *Registry) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	values, err := Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return values
}

// Every source's figures come out under their names, histograms cumulative.
func TestCollectorReadsEverySource(t *testing.T) {
	var cs coordinator.Stats
	cs.ReplicaAcks, cs.ReplicaTimeouts, cs.Forwarded = 7, 2, 3
	cs.RetriesRecognized = 11
	cs.ReadSiblings[1] = 5 // one sibling
	cs.ReadSiblings[2] = 2 // two
	cs.ReadSiblings[len(cs.ReadSiblings)-1] = 1
	cs.ReadSiblingsSum = 5 + 4 + 40
	var em storage.Metrics
	em.Levels[1].Tables, em.Levels[1].Bytes = 3, 3000
	em.L0Depth = 2
	em.WALSyncLatency[0], em.WALSyncLatency[len(em.WALSyncLatency)-1] = 4, 1
	em.WALSyncTime = 3 * time.Second
	em.BlockCache.Hits, em.BlockCache.Misses = 9, 1
	r := New(Sources{
		NodeID:      "n1",
		Coordinator: func() coordinator.Stats { return cs },
		Engine:      func() storage.Metrics { return em },
		Hints: func() map[string]handoff.Stats {
			return map[string]handoff.Stats{"n2": {Pending: 4, Bytes: 400, Delivered: 10, Refused: 1}}
		},
		AntiEntropy: func() (antientropy.Status, map[string]antientropy.PeerStatus) {
			return antientropy.Status{RoundsDone: 2, KeysPulled: 5},
				map[string]antientropy.PeerStatus{
					"n2": {Shared: 10, OldestVerified: time.Now().Add(-time.Minute)},
					"n3": {Shared: 10, Unverified: 3, OldestVerified: time.Now()},
				}
		},
		Members: func() []Member {
			return []Member{{"n1", "normal", true}, {"n2", "normal", false}, {"n3", "leaving", true}}
		},
		Transfers: func() []rebalance.Transfer {
			return []rebalance.Transfer{
				{Kind: "join", State: "streaming", PartitionsTotal: 10, PartitionsDone: 4, Bytes: 100},
				{Kind: "drop", State: "done", PartitionsTotal: 5, PartitionsDone: 5, Bytes: 0},
			}
		},
		HandingOver: func() int { return 6 },
	})
	v := scrape(t, r)
	want := map[string]float64{
		`ringkv_replica_writes_total{outcome="ack"}`:                 7,
		`ringkv_replica_writes_total{outcome="timeout"}`:             2,
		`ringkv_forwarded_writes_total`:                              3,
		`ringkv_retried_writes_recognized_total`:                     11,
		`ringkv_read_siblings_count`:                                 8,
		`ringkv_read_siblings_sum`:                                   49,
		`ringkv_hints_pending{target="n2"}`:                          4,
		`ringkv_hints_delivered_total{target="n2"}`:                  10,
		`ringkv_antientropy_rounds_total`:                            2,
		`ringkv_antientropy_keys_repaired_total{direction="pulled"}`: 5,
		`ringkv_antientropy_unverified_partitions{peer="n3"}`:        3,
		`ringkv_members{alive="true",state="normal"}`:                1,
		`ringkv_members{alive="false",state="normal"}`:               1,
		`ringkv_members{alive="true",state="leaving"}`:               1,
		`ringkv_members{alive="true",state="joining"}`:               0,
		`ringkv_transfers_running`:                                   1,
		`ringkv_transfer_partitions_remaining`:                       6,
		`ringkv_handing_over_partitions`:                             6,
		`ringkv_engine_level_tables{level="1"}`:                      3,
		`ringkv_engine_l0_depth`:                                     2,
		`ringkv_engine_wal_sync_duration_seconds_count`:              5,
		`ringkv_engine_wal_sync_duration_seconds_sum`:                3,
		`ringkv_engine_block_cache_requests_total{result="hit"}`:     9,
		`ringkv_node_info{dc="",node_id="n1",rack=""}`:               1,
	}
	for name, w := range want {
		if got, ok := v[name]; !ok || got != w {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, w)
		}
	}
	if age := v[`ringkv_antientropy_oldest_verification_age_seconds{peer="n2"}`]; age < 59 || age > 120 {
		t.Errorf("oldest verification age of n2 = %v, want about 60", age)
	}
	if _, ok := v[`ringkv_antientropy_oldest_verification_age_seconds{peer="n3"}`]; ok {
		t.Errorf("n3 has unverified partitions: its oldest verification age must be absent, not the age of the verified ones")
	}
}

// Requests land in their series; a client's arbitrary numeric level
// shares one "other" series.
func TestRequestsByInterfaceOperationAndLevel(t *testing.T) {
	r := New(Sources{})
	obs := r.Observer()
	obs.ObserveRequest("resp", coordinator.OpPut, coordinator.Quorum, 3*time.Millisecond, nil)
	obs.ObserveRequest("resp", coordinator.OpPut, coordinator.Quorum, 5*time.Millisecond, errors.New("quorum"))
	obs.ObserveRequest("http", coordinator.OpGet, 2, time.Millisecond, nil)
	// A pipeline batch: 16 GETs of 2 ms each, 3 of them failed.
	bo, ok := obs.(coordinator.BatchObserver)
	if !ok {
		t.Fatalf("the Observer does not take batches (coordinator.BatchObserver)")
	}
	bo.ObserveRequests("resp", coordinator.OpGet, coordinator.Quorum, 2*time.Millisecond, 16, 3)
	for level := 1000; level < 1100; level++ {
		obs.ObserveRequest("http", coordinator.OpGet, level, time.Millisecond, nil)
	}
	v := scrape(t, r)
	want := map[string]float64{
		`ringkv_request_duration_seconds_count{api="resp",level="quorum",op="put"}`: 2,
		`ringkv_request_duration_seconds_sum{api="resp",level="quorum",op="put"}`:   0.008,
		`ringkv_request_failures_total{api="resp",level="quorum",op="put"}`:         1,
		`ringkv_request_duration_seconds_count{api="http",level="2",op="get"}`:      1,
		`ringkv_request_duration_seconds_count{api="http",level="other",op="get"}`:  100,
		`ringkv_request_duration_seconds_count{api="resp",level="quorum",op="get"}`: 16,
		`ringkv_request_duration_seconds_sum{api="resp",level="quorum",op="get"}`:   0.032,
		`ringkv_request_failures_total{api="resp",level="quorum",op="get"}`:         3,
	}
	for name, w := range want {
		if got := v[name]; got < w-1e-9 || got > w+1e-9 {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
	n := 0
	for name := range v {
		if len(name) > 31 && name[:31] == "ringkv_request_duration_seconds" {
			n++
		}
	}
	if n != 8 { // count and sum of four series
		t.Errorf("%d request-duration series, want 8 (the numeric levels must not each get one)", n)
	}
}
