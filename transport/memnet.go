package transport

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"
)

// Network is an in-memory network for tests: nodes Listen on names, clients
// Call them, and faults are injected per directed link (from -> to).
//
// Semantics, chosen to match what a real network does to RPCs:
//   - Calling an address where no node listens fails at once with
//     ErrUnreachable (like a refused connection). Stopping a node fails its
//     in-flight calls with ErrUnreachable (like a broken connection).
//   - A cut, partitioned, isolated or randomly dropped link loses messages
//     silently: the request (on the from->to link) or the reply (on the
//     to->from link) never arrives and the caller waits until its context
//     ends. A lost reply means the handler did run. SetFailFast makes a cut
//     request link fail at once with ErrUnreachable instead.
//   - Delays apply per message: the request is delayed by the from->to
//     delay, the reply by the to->from delay.
//   - Payloads are copied in both directions, so a caller or handler that
//     keeps or mutates a buffer after handing it over is caught by tests.
//   - Handler errors reach the caller as *RemoteError (only the text
//     crosses), as over TCP.
//   - A node may always call itself, whatever faults are set.
//
// Calls without a context deadline get a default timeout (30 s, see
// SetDefaultTimeout), so a lost message cannot hang a test forever.
type Network struct {
	mu          sync.Mutex
	rng         *rand.Rand
	nodes       map[string]*memNode
	links       map[memLink]linkFault
	isolated    map[string]bool
	failFast    bool
	callTimeout time.Duration
}

type memLink struct{ from, to string }

type linkFault struct {
	cut   bool
	delay time.Duration
	drop  float64
}

// NewNetwork returns an empty network whose random drops use seed 1, so a
// test is reproducible by default.
func NewNetwork() *Network { return NewNetworkSeed(1) }

// NewNetworkSeed returns an empty network whose random drops are drawn from
// a generator seeded with seed. (Which call gets which draw still depends on
// goroutine scheduling when calls are concurrent.)
func NewNetworkSeed(seed int64) *Network {
	return &Network{
		rng:         rand.New(rand.NewPCG(uint64(seed), 0x72696e676b76)),
		nodes:       make(map[string]*memNode),
		links:       make(map[memLink]linkFault),
		isolated:    make(map[string]bool),
		callTimeout: defaultCallTimeout,
	}
}

// SetDefaultTimeout sets the timeout applied to calls whose context has no
// deadline (default 30 s).
func (n *Network) SetDefaultTimeout(d time.Duration) {
	n.mu.Lock()
	n.callTimeout = d
	n.mu.Unlock()
}

// SetFailFast chooses what a cut request link does: with on, the call fails
// at once with ErrUnreachable; by default the request is lost and the caller
// waits until its deadline. Lost replies always make the caller wait.
func (n *Network) SetFailFast(on bool) {
	n.mu.Lock()
	n.failFast = on
	n.mu.Unlock()
}

// Cut loses every message travelling from `from` to `to` (one way). After
// Cut(a, b): a's calls to b are lost, so a waits for its deadline; b's calls
// to a still run at a, but a's replies travel a -> b and are lost too, so b
// also times out after a executed the request. Cut(b, a) is independent.
func (n *Network) Cut(from, to string) {
	n.update(from, to, func(f *linkFault) { f.cut = true })
}

// Partition cuts every link between a node of groupA and a node of groupB,
// both ways.
func (n *Network) Partition(groupA, groupB []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range groupA {
		for _, b := range groupB {
			n.updateLocked(a, b, func(f *linkFault) { f.cut = true })
			n.updateLocked(b, a, func(f *linkFault) { f.cut = true })
		}
	}
}

// Isolate cuts node off from every other node, both ways, including nodes
// that start listening later. Heal undoes it.
func (n *Network) Isolate(node string) {
	n.mu.Lock()
	n.isolated[node] = true
	n.mu.Unlock()
}

// Heal removes every fault: cuts, partitions, isolation, delays and drop
// rates.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.links)
	clear(n.isolated)
	n.mu.Unlock()
}

// HealLink removes every fault (cut, delay, drop rate) set on the directed
// link from -> to. It does not undo Isolate.
func (n *Network) HealLink(from, to string) {
	n.mu.Lock()
	delete(n.links, memLink{from, to})
	n.mu.Unlock()
}

// SetDelay delays every message from `from` to `to` by d (0 removes it).
func (n *Network) SetDelay(from, to string, d time.Duration) {
	n.update(from, to, func(f *linkFault) { f.delay = d })
}

// SetDropRate loses each message from `from` to `to` with probability p
// (0 removes it, 1 loses all), drawn from the network's seeded generator.
func (n *Network) SetDropRate(from, to string, p float64) {
	n.update(from, to, func(f *linkFault) { f.drop = p })
}

func (n *Network) update(from, to string, fn func(*linkFault)) {
	n.mu.Lock()
	n.updateLocked(from, to, fn)
	n.mu.Unlock()
}

func (n *Network) updateLocked(from, to string, fn func(*linkFault)) {
	l := memLink{from, to}
	f := n.links[l]
	fn(&f)
	if f == (linkFault{}) {
		delete(n.links, l)
	} else {
		n.links[l] = f
	}
}

// fate decides what happens to one message on from -> to.
func (n *Network) fate(from, to string) (cut, drop bool, delay time.Duration) {
	if from == to {
		return false, false, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.links[memLink{from, to}]
	cut = f.cut || n.isolated[from] || n.isolated[to]
	drop = cut || (f.drop > 0 && n.rng.Float64() < f.drop)
	return cut, drop, f.delay
}

// Listen registers h at addr until the returned Closer is closed. Closing
// fails the node's in-flight calls with ErrUnreachable, cancels its running
// handlers' contexts and waits for them to return.
func (n *Network) Listen(addr string, h Handler) (io.Closer, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[addr]; ok {
		return nil, fmt.Errorf("transport: memory listen on %s: address already in use", addr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	node := &memNode{net: n, addr: addr, h: h, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	n.nodes[addr] = node
	return node, nil
}

// Client returns a Transport whose calls come from the node named self.
func (n *Network) Client(self string) Transport {
	return &memClient{net: n, self: self, closed: make(chan struct{})}
}

type memNode struct {
	net    *Network
	addr   string
	h      Handler
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the node stops

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup // running handlers
}

func (m *memNode) Close() error {
	m.net.mu.Lock()
	if m.net.nodes[m.addr] == m {
		delete(m.net.nodes, m.addr)
	}
	m.net.mu.Unlock()
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	m.mu.Unlock()
	close(m.done)
	m.cancel()
	m.wg.Wait()
	return nil
}

// enter registers a handler run; false once the node stopped.
func (m *memNode) enter() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return false
	}
	m.wg.Add(1)
	return true
}

type memClient struct {
	net       *Network
	self      string
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *memClient) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *memClient) Call(ctx context.Context, addr string, kind uint8, payload []byte) ([]byte, error) {
	n := c.net
	n.mu.Lock()
	timeout := n.callTimeout
	node := n.nodes[addr]
	failFast := n.failFast
	n.mu.Unlock()

	ctx, cancel := withDefaultTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-c.closed:
		return nil, fmt.Errorf("transport: call to %s (kind %d): %w", addr, kind, ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, ctxError(addr, kind, err))
	}
	if node == nil {
		return nil, fmt.Errorf("transport: call to %s (kind %d): %w: %w: no node listening", addr, kind, ErrUnreachable, ErrNotSent)
	}
	cut, drop, delay := n.fate(c.self, addr)
	if cut && failFast {
		return nil, fmt.Errorf("transport: call to %s (kind %d): %w: %w: link %s -> %s is cut", addr, kind, ErrUnreachable, ErrNotSent, c.self, addr)
	}

	req := clone(payload) // the caller may reuse payload once Call returns
	res := make(chan callResult, 1)
	// The message travels on its own goroutine so that, like on a real
	// network, it may still arrive and run after the caller gave up.
	go c.deliver(ctx, node, kind, req, drop, delay, res)

	select {
	case r := <-res:
		return r.payload, r.err
	case <-ctx.Done():
		return nil, ctxError(addr, kind, ctx.Err())
	case <-node.done:
		return nil, fmt.Errorf("transport: call to %s (kind %d): %w: node stopped", addr, kind, ErrUnreachable)
	case <-c.closed:
		return nil, fmt.Errorf("transport: call to %s (kind %d): %w", addr, kind, ErrClosed)
	}
}

// deliver carries one request to node and its reply back, applying faults.
func (c *memClient) deliver(ctx context.Context, node *memNode, kind uint8, req []byte, drop bool, delay time.Duration, res chan<- callResult) {
	if !sleepUnless(delay, node.done) || drop {
		return
	}
	if !node.enter() {
		return
	}
	// The handler sees the caller's deadline and cancellation (the TCP
	// transport sends both), but none of the caller's context values.
	hctx, hcancel := context.WithCancel(node.ctx)
	if d, ok := ctx.Deadline(); ok {
		hctx, hcancel = context.WithDeadline(node.ctx, d)
	}
	stop := context.AfterFunc(ctx, hcancel)
	resp, err := callMemHandler(hctx, node.h, c.self, kind, req)
	stop()
	hcancel()
	node.wg.Done()

	_, drop, delay = c.net.fate(node.addr, c.self)
	if !sleepUnless(delay, node.done) || drop {
		return
	}
	if err != nil {
		res <- callResult{err: &RemoteError{Addr: node.addr, Kind: kind, Message: err.Error()}}
		return
	}
	res <- callResult{payload: clone(resp)}
}

func callMemHandler(ctx context.Context, h Handler, from string, kind uint8, req []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			// Answer with the stack in the message, as the TCP server logs
			// it, so one bad handler does not kill the whole test binary.
			resp, err = nil, fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return h.Handle(ctx, from, kind, req)
}

// sleepUnless waits d; false if stop closed first.
func sleepUnless(d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
