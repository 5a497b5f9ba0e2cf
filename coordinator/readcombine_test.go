package coordinator_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
)

// Peer message kinds of reads (coordinator/rpc.go).
const (
	kindRead            = 1
	kindReadBatch       = 5
	kindReadBatchDigest = 9
	kindReadDigest      = 10
)

// readCounter counts the read messages from n1 that a node handles, by
// kind, and while holding is set holds the single digest reads (kind 10)
// of keys with prefix hold until release is closed, counting them in held.
type readCounter struct {
	hold    string
	holding atomic.Bool
	release chan struct{}
	held    atomic.Int32
	single  atomic.Int32 // kinds 1 and 10
	batched atomic.Int32 // kinds 5 and 9
}

func (rc *readCounter) wrap(h transport.Handler) transport.Handler {
	return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
		if from == "n1" {
			switch kind {
			case kindRead, kindReadDigest:
				rc.single.Add(1)
				l, w := binary.Uvarint(payload)
				if kind == kindReadDigest && rc.holding.Load() && strings.HasPrefix(string(payload[w:w+int(l)]), rc.hold) {
					rc.held.Add(1)
					<-rc.release
				}
			case kindReadBatch, kindReadBatchDigest:
				rc.batched.Add(1)
			}
		}
		return h.Handle(ctx, from, kind, payload)
	})
}

// Concurrent single reads through one coordinator that arrive while two
// are in flight go to the other replicas combined (readcombine.go): one
// batched message per replica instead of one per read, and each read still
// answers with its own key's value (or none), reads of live values (as
// Redis GET's) and of objects (as HTTP's) alike.
func TestConcurrentReadsAreCombined(t *testing.T) {
	rc := &readCounter{hold: "hold", release: make(chan struct{})}
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 71,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 5 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler { return rc.wrap(h) }})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	const reads = 48
	for i := range reads {
		if i%7 == 3 {
			continue // absent: read as not found
		}
		if _, err := n1.Coord.Put(ctx, fmt.Appendf(nil, "key-%d", i), fmt.Appendf(nil, "v%d", i), nil, 3); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if _, err := n1.Coord.Put(ctx, fmt.Appendf(nil, "hold-%d", i), []byte("h"), nil, 3); err != nil {
			t.Fatal(err)
		}
	}
	// Two reads in flight, held at the replica each asks.
	rc.holding.Store(true)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			v, found, err := n1.Coord.GetLive(ctx, fmt.Appendf(nil, "hold-%d", i), 2)
			if err != nil || !found || string(v) != "h" {
				t.Errorf("held read %d: %q %v %v", i, v, found, err)
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); rc.held.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads held, want 2", rc.held.Load())
		}
	}
	single := rc.single.Load()
	for i := range reads {
		wg.Go(func() {
			key := fmt.Appendf(nil, "key-%d", i)
			if i%2 == 1 { // an object read (as HTTP's), combined with the others
				obj, err := n1.Coord.Get(ctx, key, 2)
				got, want := fmt.Sprint(liveValues(obj)), fmt.Sprintf("[v%d]", i)
				if i%7 == 3 {
					want = "[]"
				}
				if err != nil || got != want {
					t.Errorf("object read %d: %s %v, want %s", i, got, err, want)
				}
				return
			}
			v, found, err := n1.Coord.GetLive(ctx, key, 2)
			switch {
			case err != nil:
				t.Errorf("read %d: %v", i, err)
			case i%7 == 3 && found:
				t.Errorf("read %d of an absent key: %q", i, v)
			case i%7 != 3 && (!found || string(v) != fmt.Sprintf("v%d", i)):
				t.Errorf("read %d: %q (found %v), want v%d", i, v, found, i)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // past the queue wait: the queued reads went
	close(rc.release)
	wg.Wait()
	// Alone, each read would send one single message: 48. A read that
	// finds itself alone in the queue when a call may start goes as a
	// single one, so a few may.
	singles, batched := rc.single.Load()-single, rc.batched.Load()
	if batched == 0 || singles+batched > 12 {
		t.Errorf("%d batched and %d single read messages for %d concurrent reads queued behind two, want at least one batched and at most 12 in all", batched, singles, reads)
	}
	t.Logf("%d reads in %d batched and %d single messages", reads, batched, singles)
}

// A replica that hangs on reads without being marked down holds a
// combined read no longer than a single one: past SpeculativeDelay the
// keys it was asked for ask the third replica, so every read answers well
// within the half of Timeout that the batch would otherwise wait.
func TestCombinedReadsAskAnotherReplicaWhenOneHangs(t *testing.T) {
	var hang atomic.Bool
	release := make(chan struct{})
	rc := &readCounter{}
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 72,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 4 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			counted := rc.wrap(h)
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if id == "n2" && from == "n1" && hang.Load() && (kind == kindRead || kind == kindReadBatch || kind == kindReadBatchDigest || kind == kindReadDigest) {
					<-release
				}
				return counted.Handle(ctx, from, kind, payload)
			})
		}})
	t.Cleanup(func() { close(release) })
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	const reads = 64
	for i := range reads {
		if _, err := n1.Coord.Put(ctx, fmt.Appendf(nil, "key-%d", i), fmt.Appendf(nil, "v%d", i), nil, 3); err != nil {
			t.Fatal(err)
		}
	}
	hang.Store(true)
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for round := range 3 {
		for i := range reads {
			wg.Go(func() {
				start := time.Now()
				v, found, err := n1.Coord.GetLive(ctx, fmt.Appendf(nil, "key-%d", i), 2)
				took := time.Since(start)
				for {
					old := slowest.Load()
					if int64(took) <= old || slowest.CompareAndSwap(old, int64(took)) {
						break
					}
				}
				if err != nil || !found || string(v) != fmt.Sprintf("v%d", i) {
					t.Errorf("round %d read %d: %q (found %v) %v, want v%d", round, i, v, found, err, i)
				}
			})
		}
		wg.Wait()
	}
	if rc.batched.Load() == 0 {
		t.Fatal("no batched read message: the reads were not combined")
	}
	// Half of Timeout is 2 s; a read that asks the third replica after
	// SpeculativeDelay (20 ms) answers in a fraction of that.
	if d := time.Duration(slowest.Load()); d > time.Second {
		t.Errorf("slowest read took %v with one replica hanging, want well under Timeout/2 (2 s)", d)
	}
	t.Logf("slowest read %v; %d batched and %d single read messages", time.Duration(slowest.Load()), rc.batched.Load(), rc.single.Load())
}
