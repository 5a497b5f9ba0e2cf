package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Client is the TCP Transport. It keeps one connection per peer address,
// dialled on first use and redialled on the next call after it broke.
type Client struct {
	self string
	o    Options

	mu     sync.Mutex
	slots  map[string]*connSlot
	closed bool
}

var _ Transport = (*Client)(nil)

// connSlot is the client's entry for one address: a dial in progress (ready
// open) or its outcome. Callers arriving during a dial share it instead of
// opening connections of their own.
type connSlot struct {
	ready chan struct{}
	cc    *clientConn
	err   error
}

// NewClient returns a TCP client that introduces itself to servers as self
// (this node's advertised address, the handlers' from argument).
func NewClient(self string, o Options) *Client {
	return &Client{self: self, o: o.withDefaults(), slots: make(map[string]*connSlot)}
}

// errConnGone marks a call that failed before any byte of it was buffered
// for the peer, so retrying on a fresh connection cannot execute it twice.
var errConnGone = errors.New("connection already closed")

// Call implements Transport.
func (c *Client) Call(ctx context.Context, addr string, kind uint8, payload []byte) ([]byte, error) {
	ctx, cancel := withDefaultTimeout(ctx, c.o.CallTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return nil, ctxError(addr, kind, err)
	}
	if frameOverhead+len(payload) > c.o.MaxFrameSize {
		return nil, fmt.Errorf("transport: call to %s (kind %d): request payload of %d bytes exceeds max frame size %d: %w",
			addr, kind, len(payload), c.o.MaxFrameSize, ErrFrameTooLarge)
	}
	for attempt := 0; ; attempt++ {
		cc, err := c.getConn(ctx, addr, kind)
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(ctx, kind, payload)
		// The connection was found broken (or closed as idle) before the
		// request was buffered: nothing was sent, so one retry on a new
		// connection is safe.
		if errors.Is(err, errConnGone) && attempt == 0 {
			continue
		}
		if errors.Is(err, errConnGone) {
			return nil, fmt.Errorf("transport: call to %s (kind %d): %w: %w", addr, kind, ErrUnreachable, cc.failure())
		}
		return resp, err
	}
}

// Close closes all connections; in-flight calls fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	slots := c.slots
	c.slots = nil
	c.mu.Unlock()
	for _, s := range slots {
		select {
		case <-s.ready:
			if s.cc != nil {
				s.cc.fail(ErrClosed)
			}
		default:
			// The dialling goroutine sees closed and closes its connection.
		}
	}
	return nil
}

// getConn returns a live connection to addr, dialling if needed. The dial
// runs in its own goroutine, bounded by DialTimeout, so a caller whose
// context ends stops waiting while others may still use the result.
func (c *Client) getConn(ctx context.Context, addr string, kind uint8) (*clientConn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, fmt.Errorf("transport: call to %s: %w", addr, ErrClosed)
		}
		s := c.slots[addr]
		if s == nil {
			s = &connSlot{ready: make(chan struct{})}
			c.slots[addr] = s
			go c.dial(addr, s)
		}
		c.mu.Unlock()

		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotSent, ctxError(addr, kind, ctx.Err()))
		}
		if s.err != nil {
			return nil, s.err
		}
		if !s.cc.broken.Load() {
			return s.cc, nil
		}
		// Broken connection still in the map: drop it and redial.
		c.forget(addr, s)
	}
}

// forget removes s from the map if it is still the current slot for addr.
func (c *Client) forget(addr string, s *connSlot) {
	c.mu.Lock()
	if c.slots[addr] == s {
		delete(c.slots, addr)
	}
	c.mu.Unlock()
}

func (c *Client) dial(addr string, s *connSlot) {
	d := net.Dialer{Timeout: c.o.DialTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		return setUnackedTimeout(rc, c.o.UnackedTimeout)
	}}
	conn, err := d.Dial("tcp", addr)
	if err == nil && c.o.ClientTLS != nil {
		tc := tls.Client(conn, c.o.ClientTLS)
		ctx, cancel := context.WithTimeout(context.Background(), c.o.DialTimeout)
		if err = tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			err = fmt.Errorf("TLS handshake: %w", err)
		}
		cancel()
		conn = tc
	}
	if err != nil {
		s.err = fmt.Errorf("transport: dial %s: %w: %w: %w", addr, ErrUnreachable, ErrNotSent, err)
		// Failed dials are not cached: the next call tries again.
		c.forget(addr, s)
		close(s.ready)
		return
	}
	cc := newClientConn(c, addr, s, conn)
	// Publish under c.mu so Close either sees the slot ready (and closes
	// the connection) or we see closed here: no connection leaks.
	c.mu.Lock()
	closed := c.closed
	if closed {
		s.err = fmt.Errorf("transport: call to %s: %w", addr, ErrClosed)
	} else {
		s.cc = cc
	}
	close(s.ready)
	c.mu.Unlock()
	if closed {
		cc.fail(ErrClosed)
	}
}

// clientConn is one connection to a peer with its in-flight calls.
type clientConn struct {
	c    *Client
	addr string
	slot *connSlot
	conn net.Conn
	w    *connWriter

	broken atomic.Bool
	uses   atomic.Uint64 // calls started; the idle check compares snapshots

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*pendingCall
	err     error // why the connection ended; set once

	idleTimer *time.Timer
	idleUses  uint64 // uses at the previous idle check (idle timer only)
}

type pendingCall struct {
	kind uint8
	ch   chan callResult // buffered 1: the reader never blocks on a caller
}

type callResult struct {
	payload []byte
	err     error
}

func newClientConn(c *Client, addr string, slot *connSlot, conn net.Conn) *clientConn {
	cc := &clientConn{c: c, addr: addr, slot: slot, conn: conn, pending: make(map[uint64]*pendingCall)}
	cc.w = newConnWriter(conn, c.o.WriteTimeout, func(err error) {
		cc.fail(fmt.Errorf("write to %s: %w", addr, err))
	})
	// The hello is the first frame; it cannot fail on a fresh writer.
	cc.w.enqueue(false, nil, 0, frameHello, protocolVersion, 0, []byte(c.self))
	go cc.readLoop()
	if c.o.IdleTimeout > 0 {
		// Armed under mu: idleCheck and fail read the field under mu.
		cc.mu.Lock()
		cc.idleTimer = time.AfterFunc(c.o.IdleTimeout, cc.idleCheck)
		cc.mu.Unlock()
	}
	return cc
}

func (cc *clientConn) failure() error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err == nil {
		return errConnGone
	}
	return cc.err
}

// pendingPool recycles pendingCalls and their channels. A pendingCall goes
// back only when its channel is known to be empty and no one else holds it:
// after the caller received from it, or after the caller itself removed it
// from the pending map (then no one will send).
var pendingPool = sync.Pool{New: func() any { return &pendingCall{ch: make(chan callResult, 1)} }}

// roundTrip sends one request and waits for its reply.
func (cc *clientConn) roundTrip(ctx context.Context, kind uint8, payload []byte) ([]byte, error) {
	deadline, has := ctx.Deadline()
	tmo, ok := timeoutMillis(deadline, has)
	if !ok {
		return nil, ctxError(cc.addr, kind, context.DeadlineExceeded)
	}
	pc := pendingPool.Get().(*pendingCall)
	pc.kind = kind
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		pendingPool.Put(pc)
		return nil, errConnGone
	}
	cc.nextID++
	id := cc.nextID
	cc.pending[id] = pc
	cc.mu.Unlock()
	cc.uses.Add(1)

	var r callResult
	if err := cc.w.enqueue(true, ctx.Done(), id, frameRequest, kind, tmo, payload); err != nil {
		if cc.remove(id) {
			pendingPool.Put(pc)
			if ctx.Err() != nil {
				return nil, ctxError(cc.addr, kind, ctx.Err())
			}
			return nil, errConnGone
		}
		// The connection failed and is answering this call right now.
		r = <-pc.ch
	} else {
		select {
		case r = <-pc.ch:
		case <-ctx.Done():
			if cc.remove(id) {
				pendingPool.Put(pc)
				// Let the server stop working for us; best effort, never
				// blocks.
				cc.w.enqueue(false, nil, id, frameCancel, 0, 0, nil)
				return nil, ctxError(cc.addr, kind, ctx.Err())
			}
			// A reply or failure is being delivered; take it so the
			// channel is empty, then report the deadline below.
			r = <-pc.ch
		}
	}
	pendingPool.Put(pc)

	// A reply that arrives after the deadline counts as late even if our
	// timer has not fired yet (timers run late under load, and the server's
	// copy of the deadline may fire first): callers get one consistent
	// answer, and a handler that failed only because its deadline passed is
	// reported as a deadline, not as a remote error.
	if err := ctx.Err(); err != nil || (has && !time.Now().Before(deadline)) {
		if err == nil {
			err = context.DeadlineExceeded
		}
		if r.err != nil && !errors.Is(r.err, ErrUnreachable) && !errors.Is(r.err, ErrClosed) {
			return nil, fmt.Errorf("transport: call to %s (kind %d): %w (late reply: %w)", cc.addr, kind, err, r.err)
		}
		if r.err == nil {
			return nil, ctxError(cc.addr, kind, err)
		}
	}
	return r.payload, r.err
}

// remove unregisters a pending call; false if someone else already took it
// (and will deliver, or has delivered, its result on the channel).
func (cc *clientConn) remove(id uint64) bool {
	cc.mu.Lock()
	_, ok := cc.pending[id]
	if ok {
		delete(cc.pending, id)
	}
	cc.mu.Unlock()
	return ok
}

func (cc *clientConn) readLoop() {
	br := bufio.NewReaderSize(cc.conn, 64<<10)
	hbuf := make([]byte, headerLen)
	max := cc.c.o.MaxFrameSize
	for {
		h, err := readHeader(br, hbuf)
		if err != nil {
			cc.fail(fmt.Errorf("read from %s: %w", cc.addr, err))
			return
		}
		if err := checkLength(h, max); err != nil {
			cc.c.o.Logf("transport: closing connection to %s: %v", cc.addr, err)
			// The call the oversize reply belongs to gets a clear error; the
			// others fail as unreachable since skipping the rest of the frame
			// is not worth it. The connection is retired before the caller
			// hears back so its next call cannot race with the close.
			var pc *pendingCall
			if errors.Is(err, ErrFrameTooLarge) {
				pc = cc.take(h.id)
			}
			cc.fail(fmt.Errorf("connection to %s: %w", cc.addr, err))
			if pc != nil {
				pc.ch <- callResult{err: fmt.Errorf("transport: reply from %s: %w", cc.addr, err)}
			}
			return
		}
		if h.typ != frameResponse && h.typ != frameError {
			err := fmt.Errorf("unexpected %s frame from server %s", frameTypeName(h.typ), cc.addr)
			cc.c.o.Logf("transport: closing connection to %s: %v", cc.addr, err)
			cc.fail(err)
			return
		}
		payload, err := readPayload(br, h.payloadLen())
		if err != nil {
			cc.fail(fmt.Errorf("read from %s: %w", cc.addr, err))
			return
		}
		if h.typ == frameResponse {
			cc.deliver(h.id, callResult{payload: payload})
			continue
		}
		cc.deliverError(h, payload)
	}
}

func (cc *clientConn) deliverError(h header, msg []byte) {
	if h.kind == errCodeProtocol {
		cc.fail(fmt.Errorf("%s refused this node's connection: %s: %w", cc.addr, msg, ErrUnreachable))
		return
	}
	pc := cc.take(h.id)
	if h.kind == errCodeTooLargeClosing {
		// The server is closing this connection. Retire it before the
		// caller hears back, so its next call cannot pick it up and race
		// with the close.
		cc.fail(fmt.Errorf("server %s closed the connection after refusing an oversize request", cc.addr))
	}
	if pc == nil {
		return // the caller gave up already
	}
	var err error
	switch h.kind {
	case errCodeTooLarge, errCodeTooLargeClosing:
		err = fmt.Errorf("transport: call to %s (kind %d): refused by server: %s: %w", cc.addr, pc.kind, msg, ErrFrameTooLarge)
	default:
		err = &RemoteError{Addr: cc.addr, Kind: pc.kind, Message: string(msg)}
	}
	pc.ch <- callResult{err: err}
}

func (cc *clientConn) deliver(id uint64, r callResult) {
	if pc := cc.take(id); pc != nil {
		pc.ch <- r
	}
}

// take unregisters and returns a pending call (nil if the caller gave up).
func (cc *clientConn) take(id uint64) *pendingCall {
	cc.mu.Lock()
	pc := cc.pending[id]
	delete(cc.pending, id)
	cc.mu.Unlock()
	return pc
}

// fail ends the connection once: it is removed from the client, the socket
// closed, and every in-flight call answered with an ErrUnreachable-wrapped
// error (ErrClosed when the client itself is closing).
func (cc *clientConn) fail(cause error) {
	cc.mu.Lock()
	pending, ok := cc.markFailedLocked(cause)
	cc.mu.Unlock()
	if ok {
		cc.teardown(cause, pending)
	}
}

// markFailedLocked records the end of the connection; after it no call can
// register, which is what makes the idle close race-free.
func (cc *clientConn) markFailedLocked(cause error) (map[uint64]*pendingCall, bool) {
	if cc.err != nil {
		return nil, false
	}
	cc.err = cause
	cc.broken.Store(true)
	pending := cc.pending
	cc.pending = nil
	if cc.idleTimer != nil {
		cc.idleTimer.Stop()
	}
	return pending, true
}

func (cc *clientConn) teardown(cause error, pending map[uint64]*pendingCall) {
	cc.c.forget(cc.addr, cc.slot)
	cc.w.closeNow(cause)
	cc.conn.Close()
	for _, pc := range pending {
		var err error
		if errors.Is(cause, ErrClosed) {
			err = fmt.Errorf("transport: call to %s (kind %d): %w", cc.addr, pc.kind, ErrClosed)
		} else {
			err = fmt.Errorf("transport: call to %s (kind %d): %w: %w", cc.addr, pc.kind, ErrUnreachable, cause)
		}
		pc.ch <- callResult{err: err}
	}
}

var errIdle = errors.New("connection closed after idle timeout")

// idleCheck closes the connection if no call started since the last check
// and none is in flight; otherwise it re-arms. A call that picked this
// connection just before finds it closed at registration (nothing sent yet)
// and retries on a new one.
func (cc *clientConn) idleCheck() {
	uses := cc.uses.Load()
	cc.mu.Lock()
	idle := cc.err == nil && len(cc.pending) == 0 && uses == cc.idleUses
	cc.idleUses = uses
	var pending map[uint64]*pendingCall
	if idle {
		pending, _ = cc.markFailedLocked(errIdle)
	} else if cc.err == nil {
		cc.idleTimer.Reset(cc.c.o.IdleTimeout)
	}
	cc.mu.Unlock()
	if idle {
		cc.teardown(errIdle, pending)
	}
}
