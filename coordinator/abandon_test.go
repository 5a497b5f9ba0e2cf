package coordinator

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// A batched read that panics while more answers are on their way than its
// answer channel holds (here: both other replicas asked, one of them
// speculatively, neither answering) must not leave their senders blocked
// forever: the panic is a bug, but a recovered one (the RESP server
// recovers per connection) must not also leak a goroutine per message.
func TestAPanickingBatchedReadLeavesNoSenderBehind(t *testing.T) {
	rg := dcRing(t, map[string]int{"": 3}, nil)
	net := transport.NewNetwork()
	addrs := map[string]string{}
	for _, m := range rg.Members() {
		addrs[m.ID] = "addr-" + m.ID
	}
	view := NewStaticCluster(rg, addrs)
	key := []byte("k")
	pref := rg.Preference(rg.PartitionOfKey(key))
	self := pref[0]
	hang := transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
		<-ctx.Done() // never answers before the caller gives up
		return nil, ctx.Err()
	})
	for _, id := range pref[1:] {
		l, err := net.Listen(addrs[id], hang)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	db, err := storage.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := New(self, view, replica.New(db, version.Actor(self, 1)), net.Client(self),
		Options{Timeout: 400 * time.Millisecond, SpeculativeDelay: 20 * time.Millisecond, RepairTimeout: 400 * time.Millisecond, ReadRepairChance: -1})

	// The read runs on this goroutine; its senders are the goroutines it
	// creates (other tests' late readers may still be running).
	buf := make([]byte, 64)
	me := strings.Fields(string(buf[:runtime.Stack(buf, false)]))[1]
	panicked := func() (p any) {
		defer func() { p = recover() }()
		ready := func(int, *version.Object, []byte, error, bool) { panic("a bug in a batched read") }
		c.getBatchPlanned(context.Background(), [][]byte{key}, nil, Levels{R: 2}, batchOpts{fullReads: true, ready: ready})
		return nil
	}()
	if panicked == nil {
		t.Fatal("the batched read did not reach ready (the test's panic)")
	}
	// The read's messages are canceled as it unwinds; their senders must
	// then finish.
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		stuck := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "created by github.com/ringkv/ringkv/coordinator.(*Coordinator).getBatchPlanned") &&
				strings.Contains(g, " in goroutine "+me+"\n") {
				stuck++
			}
		}
		if stuck == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the panicked read still running 3 s later:\n%s", stuck, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
