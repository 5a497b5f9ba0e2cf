package coordinator_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
)

// Peer message kinds as they appear on the wire (see rpc.go).
const (
	wireRead           = 1
	wireReplicate      = 2
	wireReplicateCheck = 7
)

// kindCounter counts the peer messages each node receives, by kind.
type kindCounter struct {
	mu sync.Mutex
	n  map[string]map[uint8]int
}

func (k *kindCounter) wrap(refuseCheck map[string]bool) func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
			k.mu.Lock()
			if k.n == nil {
				k.n = map[string]map[uint8]int{}
			}
			if k.n[id] == nil {
				k.n[id] = map[uint8]int{}
			}
			k.n[id][kind]++
			k.mu.Unlock()
			if kind == wireReplicateCheck && refuseCheck[id] {
				// As a node that predates the kind answers it.
				return nil, fmt.Errorf("unknown peer message kind %d", kind)
			}
			return h.Handle(ctx, from, kind, payload)
		})
	}
}

// total is how many messages of kind every node received since the last
// reset.
func (k *kindCounter) total(kind uint8) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	sum := 0
	for _, byKind := range k.n {
		sum += byKind[kind]
	}
	return sum
}

func (k *kindCounter) reset() {
	k.mu.Lock()
	k.n = nil
	k.mu.Unlock()
}

// A blind write at QUORUM skips the context read when the coordinating
// replica is current: it is sent once to each other primary, which reports
// that its context covered what it held. When the coordinator missed an
// acknowledged write, the primaries answer with what they hold and the
// coordinator supersedes it with a second write: a read at ALL then finds
// the blind write alone, for a put and for a delete. A primary that does
// not know the check (an older node) makes the write fall back to the
// context read, with the same outcome.
func TestCheckedBlindWrite(t *testing.T) {
	for _, tc := range []struct {
		name        string
		refuseCheck map[string]bool
	}{
		{"current peers", nil},
		{"an older peer", map[string]bool{"n2": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var counts kindCounter
			c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 7,
				Coordinator: coordinator.Options{ReadRepairChance: -1},
				WrapHandler: counts.wrap(tc.refuseCheck)})
			ctx := ctxT(t)
			n1, n3 := c.Nodes[0], c.Nodes[2]
			if n1.ID != "n1" || c.Nodes[1].ID != "n2" {
				t.Fatalf("node IDs %s %s, want n1 n2", n1.ID, c.Nodes[1].ID)
			}

			// A current coordinator: no read, one check per other primary.
			for i := range 5 {
				key := []byte(fmt.Sprintf("fresh-%d", i))
				for _, v := range []string{"a", "b"} {
					counts.reset()
					if _, err := n1.Coord.Put(ctx, key, []byte(v), nil, coordinator.Quorum); err != nil {
						t.Fatal(err)
					}
					// Sent to both other primaries (an older n2 refuses it);
					// the third primary's answer may come after the quorum.
					waitFor(t, "both checks answered", func() (bool, string) {
						got := counts.total(wireReplicateCheck)
						return got == 2, fmt.Sprint(got)
					})
					if tc.refuseCheck == nil {
						if got := counts.total(wireRead); got != 0 {
							t.Fatalf("blind write of %s=%s by a current replica sent %d reads, want none", key, v, got)
						}
					}
					obj, err := n1.Coord.Get(ctx, key, coordinator.All)
					if err != nil {
						t.Fatal(err)
					}
					if got := fmt.Sprint(liveValues(obj)); got != fmt.Sprintf("[%s]", v) {
						t.Fatalf("after blind writes a then %s of %s, a read at ALL finds %s", v, key, got)
					}
				}
			}

			// A stale coordinator: n3 missed "old", acknowledged by n1 and n2.
			for _, op := range []string{"put", "delete"} {
				key := []byte("stale-" + op)
				c.Net.Isolate(n3.ID)
				if _, err := n1.Coord.Put(ctx, key, []byte("old"), nil, coordinator.Quorum); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond) // the copy for n3 leaves, and is lost
				c.Net.Heal()
				if obj, _ := n3.Store.Get(key); obj != nil {
					t.Fatalf("n3 was cut off but holds %v", obj)
				}
				counts.reset()
				var err error
				if op == "put" {
					_, err = n3.Coord.Put(ctx, key, []byte("new"), nil, coordinator.Quorum)
				} else {
					_, err = n3.Coord.Delete(ctx, key, nil, coordinator.Quorum)
				}
				if err != nil {
					t.Fatalf("%s by the stale replica: %v", op, err)
				}
				if tc.refuseCheck == nil && counts.total(wireReplicate) == 0 {
					t.Fatalf("%s by the stale replica: no second write was sent", op)
				}
				want := "[new]"
				if op == "delete" {
					want = "[]"
				}
				for _, via := range c.Nodes {
					obj, err := via.Coord.Get(ctx, key, coordinator.All)
					if err != nil {
						t.Fatal(err)
					}
					if got := fmt.Sprint(liveValues(obj)); got != want {
						t.Fatalf("%s by a stale replica, read at ALL via %s: %s, want %s (object %v)", op, via.ID, got, want, obj)
					}
				}
			}
		})
	}
}
