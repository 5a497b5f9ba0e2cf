package coordinator_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
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
				if id == "n2" && from == "n1" && hang.Load() && isRead(kind) {
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

// maxDuration raises *a to d when d is larger.
func maxDuration(a *atomic.Int64, d time.Duration) {
	for o := a.Load(); int64(d) > o && !a.CompareAndSwap(o, int64(d)); o = a.Load() {
	}
}

// A replica that is stale and slow, asked first, is passed over after
// SpeculativeDelay; its late answer still gets it repaired, by combined
// reads as by single ones, whether the call has ended by then (the
// answers are read in the background) or still waits for other keys.
func TestCombinedReadsRepairASlowStaleReplica(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 71,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 3 * time.Second}})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	key := func(i int) []byte { return fmt.Appendf(nil, "k-%d", i) }
	var keys []int // keys whose first replica asked after n1 is n2
	for i := 0; len(keys) < 40; i++ {
		for _, n := range c.Replicas(key(i)) {
			if n.ID != "n1" {
				if n.ID == "n2" {
					keys = append(keys, i)
				}
				break
			}
		}
	}
	for _, i := range keys {
		if _, err := n1.Coord.Put(ctx, key(i), []byte("old"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	other := func(i int) []byte { return fmt.Appendf(nil, "o-%d", i) }
	for i := range keys {
		if _, err := n1.Coord.Put(ctx, other(i), []byte("v"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	c.Net.Isolate("n2")
	for _, i := range keys {
		obj, err := n1.Coord.Get(ctx, key(i), 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n1.Coord.Put(ctx, key(i), []byte("new"), obj.Context, 2); err != nil {
			t.Fatal(err)
		}
	}
	c.Net.Heal()
	c.Net.SetDelay("n1", "n2", 80*time.Millisecond)
	var wg sync.WaitGroup
	for j, i := range keys {
		wg.Go(func() {
			if v, _, err := n1.Coord.GetLive(ctx, key(i), 2); err != nil || string(v) != "new" {
				t.Errorf("read %d: %q %v, want new", i, v, err)
			}
		})
		// Reads at R=3 in the same calls wait for n2: such a call's stale
		// keys are repaired when every answer is in, not in the background.
		wg.Go(func() {
			if v, _, err := n1.Coord.GetLive(ctx, other(j), 3); err != nil || string(v) != "v" {
				t.Errorf("read o-%d: %q %v", j, v, err)
			}
		})
	}
	wg.Wait()
	st, _ := c.StoreOf("n2")
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		stale := 0
		for _, i := range keys {
			obj, _ := st.Get(key(i))
			if v, ok := version.LiveValue(obj); !ok || string(v) != "new" {
				stale++
			}
		}
		if stale == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 still stale on %d of %d keys read concurrently past it", stale, len(keys))
		}
	}
}

// In a combined call, a key that cannot meet its quorum soon (R=3 with a
// replica hanging) holds up no other: the other reads of the call, of
// live values and of objects, answer as soon as their own answers are in.
func TestASlowKeyDoesNotHoldUpACombinedRead(t *testing.T) {
	release := make(chan struct{})
	var hang atomic.Bool
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 5,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 3 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if hang.Load() && from == "n1" && id == "n3" && isRead(kind) {
					<-release
				}
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	t.Cleanup(func() { close(release) })
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	key := func(i int) []byte { return fmt.Appendf(nil, "k-%d", i) }
	for i := range 64 {
		if _, err := n1.Coord.Put(ctx, key(i), []byte("v"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	hang.Store(true)
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			if i%8 == 0 { // R=3: waits for n3 until its timeout
				n1.Coord.GetLive(context.Background(), key(i), 3)
				return
			}
			start := time.Now()
			if i%2 == 1 { // object reads in the same calls
				if obj, err := n1.Coord.Get(ctx, key(i), 2); err != nil || fmt.Sprint(liveValues(obj)) != "[v]" {
					t.Errorf("object read %d: %v %v", i, liveValues(obj), err)
				}
			} else if v, _, err := n1.Coord.GetLive(ctx, key(i), 2); err != nil || string(v) != "v" {
				t.Errorf("read %d: %q %v", i, v, err)
			}
			maxDuration(&slowest, time.Since(start))
		})
	}
	wg.Wait()
	if d := time.Duration(slowest.Load()); d > time.Second {
		t.Errorf("slowest R=2 read %v beside R=3 reads that wait for a hanging replica, want well under a second", d)
	}
}

// A key whose ask failed, with no other replica left to ask, gives up on
// the batched answers at once (Get's path then answers it) instead of
// keeping the call waiting.
func TestACombinedKeyShortOfItsQuorumGivesUpAtOnce(t *testing.T) {
	release := make(chan struct{})
	var faulty atomic.Bool
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 5,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 3 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if faulty.Load() && from == "n1" && isRead(kind) {
					switch id {
					case "n2":
						return nil, errors.New("disk error")
					case "n3":
						<-release
					}
				}
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	t.Cleanup(func() { close(release) })
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	// xs: R=3 on n1, n2 (fails) and a third that answers; ys: R=2 asking
	// n3 (hangs) first, then a replica that answers.
	var xs, ys [][]byte
	for i := 0; len(xs) < 30 || len(ys) < 30; i++ {
		k := fmt.Appendf(nil, "k-%d", i)
		var others []string
		for _, n := range c.Replicas(k) {
			if n.ID != "n1" {
				others = append(others, n.ID)
			}
		}
		switch {
		case len(others) != 2:
			continue
		case slices.Contains(others, "n2") && !slices.Contains(others, "n3") && len(xs) < 30:
			xs = append(xs, k)
		case others[0] == "n3" && others[1] != "n2" && len(ys) < 30:
			ys = append(ys, k)
		default:
			continue
		}
		if _, err := n1.Coord.Put(ctx, k, []byte("v"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	faulty.Store(true)
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for round := range 2 {
		for i := range 30 {
			wg.Go(func() {
				start := time.Now()
				if v, _, err := n1.Coord.GetLive(ctx, ys[i], 2); err != nil || string(v) != "v" {
					t.Errorf("round %d, R=2 read: %q %v", round, v, err)
				}
				maxDuration(&slowest, time.Since(start))
			})
			wg.Go(func() {
				start := time.Now()
				// Two of three replicas answer: the read fails, quickly.
				if _, _, err := n1.Coord.GetLive(ctx, xs[i], 3); err == nil {
					t.Errorf("round %d, R=3 read with a replica failing: no error", round)
				}
				maxDuration(&slowest, time.Since(start))
			})
		}
		wg.Wait()
	}
	if d := time.Duration(slowest.Load()); d > 500*time.Millisecond {
		t.Errorf("slowest read %v, want well under half the timeout (1.5 s)", d)
	}
}

func isRead(kind uint8) bool {
	return kind == kindRead || kind == kindReadBatch || kind == kindReadBatchDigest || kind == kindReadDigest
}

// On links slower than the speculative delay everywhere (replicas in
// another datacenter), a combined read waits for its batched answers
// instead of reading each key again on its own.
func TestCombinedReadsOnSlowLinksAreNotSentTwice(t *testing.T) {
	rc := &readCounter{}
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 73,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 3 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler { return rc.wrap(h) }})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	key := func(i int) []byte { return fmt.Appendf(nil, "k-%d", i) }
	const reads = 64
	for i := range reads {
		if _, err := n1.Coord.Put(ctx, key(i), []byte("v"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"n2", "n3"} {
		c.Net.SetDelay("n1", id, 50*time.Millisecond)
		c.Net.SetDelay(id, "n1", 50*time.Millisecond)
	}
	single0 := rc.single.Load()
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		for i := range reads {
			wg.Go(func() {
				start := time.Now()
				if v, _, err := n1.Coord.GetLive(ctx, key(i), 2); err != nil || string(v) != "v" {
					t.Errorf("read %d: %q %v", i, v, err)
				}
				maxDuration(&slowest, time.Since(start))
			})
		}
		wg.Wait()
	}
	// The first reads of each round go alone (two, speculating to the
	// third replica); the rest wait about one round trip in the queue and
	// one in their call.
	if singles := rc.single.Load() - single0; singles > 16 {
		t.Errorf("%d single read messages for %d reads in 2 rounds, want the queued ones batched, not read again alone", singles, 2*reads)
	}
	if d := time.Duration(slowest.Load()); d > 400*time.Millisecond {
		t.Errorf("slowest read %v on 100 ms round trips, want about two of them", d)
	}
}
