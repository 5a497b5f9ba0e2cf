package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memCluster starts nodes on net, each answering "<self> got <payload> from
// <from>" and counting the requests it ran.
func memCluster(t *testing.T, n *Network, names ...string) map[string]*atomic.Int64 {
	t.Helper()
	counts := make(map[string]*atomic.Int64)
	for _, name := range names {
		cnt := &atomic.Int64{}
		counts[name] = cnt
		cl, err := n.Listen(name, HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			cnt.Add(1)
			return []byte(fmt.Sprintf("%s got %s from %s", name, p, from)), nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
	}
	return counts
}

func memCall(t *testing.T, n *Network, from, to string, d time.Duration) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return n.Client(from).Call(ctx, to, 1, []byte("ping"))
}

func wantOK(t *testing.T, n *Network, from, to string) {
	t.Helper()
	got, err := memCall(t, n, from, to, 2*time.Second)
	if want := fmt.Sprintf("%s got ping from %s", to, from); err != nil || string(got) != want {
		t.Fatalf("%s -> %s: got %q, %v; want %q", from, to, got, err, want)
	}
}

func wantLost(t *testing.T, n *Network, from, to string) {
	t.Helper()
	_, err := memCall(t, n, from, to, 30*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s -> %s: got %v, want DeadlineExceeded (message lost)", from, to, err)
	}
}

func TestMemRoundTripAndErrors(t *testing.T) {
	n := NewNetwork()
	memCluster(t, n, "a", "b")
	wantOK(t, n, "a", "b")
	wantOK(t, n, "b", "a")
	wantOK(t, n, "a", "a")

	if _, err := memCall(t, n, "a", "nobody", time.Second); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("no listener: got %v, want ErrUnreachable", err)
	}
	if _, err := n.Listen("a", HandlerFunc(echo)); err == nil {
		t.Fatal("second Listen on the same address succeeded")
	}

	cl, err := n.Listen("err", HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		if string(p) == "panic" {
			panic("kaboom")
		}
		return nil, errors.New("no such key")
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := n.Client("a")
	_, err = c.Call(context.Background(), "err", 9, nil)
	var re *RemoteError
	if !errors.As(err, &re) || !errors.Is(err, ErrRemote) || re.Message != "no such key" || re.Kind != 9 || re.Addr != "err" {
		t.Fatalf("got %v, want RemoteError", err)
	}
	if _, err = c.Call(context.Background(), "err", 9, []byte("panic")); !errors.As(err, &re) || !strings.Contains(re.Message, "kaboom") {
		t.Fatalf("panic: got %v", err)
	}

	c.Close()
	if _, err := c.Call(context.Background(), "b", 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed client: got %v, want ErrClosed", err)
	}
}

func TestMemCutIsOneWay(t *testing.T) {
	n := NewNetwork()
	counts := memCluster(t, n, "a", "b", "c")
	n.Cut("a", "b")

	// a's request to b is lost: b never runs it.
	before := counts["b"].Load()
	wantLost(t, n, "a", "b")
	if counts["b"].Load() != before {
		t.Fatal("b ran a request that was lost on the way")
	}
	// b's request reaches a, but the reply travels a -> b and is lost.
	before = counts["a"].Load()
	wantLost(t, n, "b", "a")
	if counts["a"].Load() != before+1 {
		t.Fatal("a should have run b's request (only the reply is lost)")
	}
	// Other links are unaffected.
	wantOK(t, n, "a", "c")
	wantOK(t, n, "c", "b")

	n.HealLink("a", "b")
	wantOK(t, n, "a", "b")
	wantOK(t, n, "b", "a")

	n.SetFailFast(true)
	n.Cut("a", "b")
	start := time.Now()
	if _, err := memCall(t, n, "a", "b", 5*time.Second); !errors.Is(err, ErrUnreachable) || time.Since(start) > time.Second {
		t.Fatalf("fail-fast cut: got %v after %v", err, time.Since(start))
	}
}

func TestMemPartitionIsolateHeal(t *testing.T) {
	n := NewNetwork()
	memCluster(t, n, "a", "b", "c", "d")
	n.Partition([]string{"a", "b"}, []string{"c", "d"})
	wantOK(t, n, "a", "b")
	wantOK(t, n, "d", "c")
	wantLost(t, n, "a", "c")
	wantLost(t, n, "c", "a")
	wantLost(t, n, "b", "d")
	n.Heal()
	wantOK(t, n, "a", "c")
	wantOK(t, n, "c", "a")

	n.Isolate("b")
	wantLost(t, n, "a", "b")
	wantLost(t, n, "b", "c")
	wantOK(t, n, "b", "b") // a node can always reach itself
	wantOK(t, n, "a", "c")
	// Isolation covers nodes that join later.
	memCluster(t, n, "e")
	wantLost(t, n, "e", "b")
	n.Heal()
	wantOK(t, n, "a", "b")
	wantOK(t, n, "e", "b")
}

func TestMemDelay(t *testing.T) {
	n := NewNetwork()
	memCluster(t, n, "a", "b")
	n.SetDelay("a", "b", 40*time.Millisecond)
	n.SetDelay("b", "a", 30*time.Millisecond)
	start := time.Now()
	wantOK(t, n, "a", "b")
	if d := time.Since(start); d < 70*time.Millisecond {
		t.Fatalf("round trip took %v, want >= 70ms (40ms there + 30ms back)", d)
	}
	// A deadline shorter than the delay expires.
	if _, err := memCall(t, n, "a", "b", 20*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	n.SetDelay("a", "b", 0)
	n.SetDelay("b", "a", 0)
	start = time.Now()
	wantOK(t, n, "a", "b")
	if d := time.Since(start); d > 30*time.Millisecond {
		t.Fatalf("delay not removed: %v", d)
	}
}

func TestMemDropRate(t *testing.T) {
	// The seeded generator decides which messages are lost: the same seed
	// loses the same messages. (Checked on the decision itself, since
	// timing out real calls with tiny deadlines would be flaky under load.)
	pattern := func(seed int64) string {
		n := NewNetworkSeed(seed)
		n.SetDropRate("a", "b", 0.5)
		var sb strings.Builder
		for range 60 {
			if _, drop, _ := n.fate("a", "b"); drop {
				sb.WriteByte('x')
			} else {
				sb.WriteByte('.')
			}
		}
		return sb.String()
	}
	p1, p2, p3 := pattern(7), pattern(7), pattern(8)
	t.Logf("seed 7: %s\nseed 8: %s", p1, p3)
	if p1 != p2 {
		t.Fatalf("same seed, different drops:\n%s\n%s", p1, p2)
	}
	if p1 == p3 {
		t.Fatal("different seeds gave the same drops")
	}
	if lost := strings.Count(p1, "x"); lost < 15 || lost > 45 {
		t.Fatalf("%d of 60 lost at p=0.5", lost)
	}

	// Concurrent, both directions lossy: about 1-(0.7*0.7) = 51% lost.
	n := NewNetwork()
	memCluster(t, n, "a", "b")
	n.SetDropRate("a", "b", 0.3)
	n.SetDropRate("b", "a", 0.3)
	var lost atomic.Int64
	var wg sync.WaitGroup
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := memCall(t, n, "a", "b", 50*time.Millisecond); err != nil {
				lost.Add(1)
			}
		}()
	}
	wg.Wait()
	if l := lost.Load(); l < 100 || l > 210 {
		t.Fatalf("%d of 300 lost, want about 153", l)
	}
	n.SetDropRate("a", "b", 0)
	n.SetDropRate("b", "a", 0)
	wantOK(t, n, "a", "b")
}

// Payloads must be copied across the boundary: neither side may see the
// other's later writes to a buffer.
func TestMemCopiesPayloads(t *testing.T) {
	n := NewNetwork()
	var mu sync.Mutex
	var kept []byte             // the request as the handler received it
	reply := []byte("original") // the handler keeps and reuses its reply buffer
	cl, err := n.Listen("b", HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		kept = p
		return reply, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := []byte("request")
	got, err := n.Client("a").Call(context.Background(), "b", 1, req)
	if err != nil {
		t.Fatal(err)
	}
	copy(req, "XXXXXXX") // caller reuses its buffer
	copy(got, "YYYYYYYY")
	mu.Lock()
	defer mu.Unlock()
	if string(kept) != "request" {
		t.Fatalf("handler's request changed to %q: payload aliased", kept)
	}
	if string(reply) != "original" {
		t.Fatalf("handler's reply buffer changed to %q: payload aliased", reply)
	}
}

func TestMemNodeCloseAndDefaultTimeout(t *testing.T) {
	n := NewNetwork()
	started := make(chan struct{})
	var finished atomic.Bool
	cl, err := n.Listen("slow", HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond)
		finished.Store(true)
		return nil, ctx.Err()
	}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := n.Client("a").Call(context.Background(), "slow", 1, nil)
		errc <- err
	}()
	<-started
	cl.Close()
	if !finished.Load() {
		t.Fatal("Close returned before the handler finished")
	}
	if err := <-errc; !errors.Is(err, ErrUnreachable) {
		t.Fatalf("in-flight call on a stopped node: got %v, want ErrUnreachable", err)
	}
	// The address is free again.
	memCluster(t, n, "slow")
	wantOK(t, n, "a", "slow")

	// A call without a deadline on a lossy link ends at the default timeout.
	n.SetDefaultTimeout(50 * time.Millisecond)
	n.Cut("a", "slow")
	start := time.Now()
	if _, err := n.Client("a").Call(context.Background(), "slow", 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestMemHandlerSeesDeadlineAndCancel(t *testing.T) {
	n := NewNetwork()
	type seen struct {
		has  bool
		err  error
		from string
	}
	seenCh := make(chan seen, 1)
	cl, err := n.Listen("b", HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		_, has := ctx.Deadline()
		<-ctx.Done()
		seenCh <- seen{has, ctx.Err(), from}
		return nil, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := n.Client("a").Call(ctx, "b", 1, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want Canceled", err)
	}
	s := <-seenCh
	if !s.has || !errors.Is(s.err, context.Canceled) || s.from != "a" {
		t.Fatalf("handler saw %+v", s)
	}
}

// The in-memory network satisfies the same interface the coordinator uses.
var _ Transport = NewNetwork().Client("x")
