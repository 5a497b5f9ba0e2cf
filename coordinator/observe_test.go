package coordinator_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
)

// countingObserver counts the requests reported to it per operation.
type countingObserver struct {
	mu             sync.Mutex
	requests, fail map[coordinator.Op]int
	levels         map[int]bool
	batchCalls     int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{requests: map[coordinator.Op]int{}, fail: map[coordinator.Op]int{}, levels: map[int]bool{}}
}

func (o *countingObserver) ObserveRequest(api string, op coordinator.Op, level int, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests[op]++
	o.levels[level] = true
	if err != nil {
		o.fail[op]++
	}
}

// batchCountingObserver also takes whole batches.
type batchCountingObserver struct{ *countingObserver }

func (o batchCountingObserver) ObserveRequests(api string, op coordinator.Op, level int, d time.Duration, n, failed int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batchCalls++
	o.requests[op] += n
	o.fail[op] += failed
	o.levels[level] = true
}

// Pipeline batches report one request per key to the Observer, failures
// included, whether it takes whole batches (coordinator.BatchObserver) or
// one request at a time, and at the level the default stands for.
func TestBatchesReportEveryRequest(t *testing.T) {
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			counts := newCountingObserver()
			var obs coordinator.Observer = counts
			if batched {
				obs = batchCountingObserver{counts}
			}
			c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 31,
				NodeOptions: func(id string, o *coordinator.Options) {
					if id == "n1" {
						o.Observer = obs
					}
				}})
			from := c.Nodes[0]
			if from.ID != "n1" {
				t.Fatalf("first node is %q: the observer was set on no node", from.ID)
			}
			ctx := ctxT(t)
			var keys, values [][]byte
			for i := 0; i < 12; i++ {
				keys = append(keys, []byte(fmt.Sprintf("obs-%d", i)))
				values = append(values, []byte("v"))
			}
			for i, err := range from.Coord.PutBatch(ctx, keys, values, coordinator.Default) {
				if err != nil {
					t.Fatalf("PutBatch key %d: %v", i, err)
				}
			}
			_, _, errs := from.Coord.GetLiveBatchAt(ctx, keys, coordinator.Levels{R: 2})
			for i, err := range errs {
				if err != nil {
					t.Fatalf("GetLiveBatchAt key %d: %v", i, err)
				}
			}
			// With a replica cut off, W=ALL fails for every key.
			c.Net.Isolate(c.Nodes[2].ID)
			failed := 0
			for _, err := range from.Coord.PutBatch(ctx, keys[:5], values[:5], coordinator.All) {
				if err != nil {
					failed++
				}
			}
			if failed != 5 {
				t.Fatalf("%d of 5 writes at ALL with a replica cut off failed, want 5", failed)
			}
			counts.mu.Lock()
			defer counts.mu.Unlock()
			if got := counts.requests[coordinator.OpPut]; got != 12+5 {
				t.Errorf("puts reported: %d, want 17", got)
			}
			if got := counts.fail[coordinator.OpPut]; got != 5 {
				t.Errorf("failed puts reported: %d, want 5", got)
			}
			if got := counts.requests[coordinator.OpGet]; got != 12 {
				t.Errorf("gets reported: %d, want 12", got)
			}
			if counts.levels[coordinator.Default] {
				t.Errorf("a request was reported at the Default level, not the level it stands for")
			}
			if batched && counts.batchCalls != 3 {
				t.Errorf("%d batch reports, want 3 (one per batch)", counts.batchCalls)
			}
		})
	}
}
