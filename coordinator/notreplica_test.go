package coordinator

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// A forwarded write refused because the receiving node's ring no longer
// makes it a replica (it applied nothing) goes on to the next replica
// instead of failing the client's request.
func TestForwardedWriteRefusedByANonReplicaGoesToTheNext(t *testing.T) {
	rg := dcRing(t, map[string]int{"": 5}, nil)
	net := transport.NewNetwork()
	addrs := map[string]string{}
	for _, m := range rg.Members() {
		addrs[m.ID] = "addr-" + m.ID
	}
	view := NewStaticCluster(rg, addrs)
	key := []byte("k")
	pref := rg.Preference(rg.PartitionOfKey(key))
	var self string
	for _, m := range rg.Members() {
		if !contains(pref, m.ID) {
			self = m.ID
			break
		}
	}
	local := c0(self, view, net)
	var asked atomic.Int32
	order := local.forwardOrder(route{pref: pref, rg: rg}, "")
	for i, id := range order {
		refuse := i == 0
		h := transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
			asked.Add(1)
			if kind != kindCoordinate {
				return nil, fmt.Errorf("unexpected kind %d", kind)
			}
			if refuse {
				return nil, fmt.Errorf("node %s %s %q", id, notReplicaRefusal, key)
			}
			obj := &version.Object{}
			if _, err := obj.WriteBlind(id, []byte("v"), false, time.Now().UnixNano()); err != nil {
				return nil, err
			}
			return obj.Encode(nil), nil
		})
		l, err := net.Listen(addrs[id], h)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	obj, err := local.Put(ctx, key, []byte("v"), nil, 2)
	if err != nil {
		t.Fatalf("put through %s, first replica %s refusing as a non-replica: %v", self, order[0], err)
	}
	if obj == nil || asked.Load() != 2 {
		t.Fatalf("asked %d replicas, want 2 (the refusing one, then the next)", asked.Load())
	}
}

// c0 is a coordinator for node self over view and net.
func c0(self string, view *StaticCluster, net *transport.Network) *Coordinator {
	return New(self, view, nil, net.Client(self), Options{Timeout: 2 * time.Second})
}
