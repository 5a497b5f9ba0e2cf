package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Server accepts TCP connections from Clients and runs a Handler for each
// request.
type Server struct {
	ln     net.Listener
	h      Handler
	o      Options
	ctx    context.Context // parent of every handler context; canceled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[*serverConn]struct{}
	closed bool

	jobs      chan handlerJob // to an idle handler goroutine (handlerLoop)
	wg        sync.WaitGroup  // accept loop, connection loops, handler goroutines, handlers
	rejected  atomic.Uint64   // connections closed over MaxConnections
	timedOut  atomic.Uint64   // connections closed by ServerIdleTimeout or FrameTimeout
	closeOnce sync.Once
	closeErr  error
}

// Listen starts a server on addr (host:port; port 0 picks a free one) that
// serves requests with h.
func Listen(addr string, h Handler, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, h: h, o: o.withDefaults(), ctx: ctx, cancel: cancel, conns: make(map[*serverConn]struct{}), jobs: make(chan handlerJob)}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is the address the server listens on (with the real port when
// Listen was given port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, closes every connection (their in-flight calls fail
// at the callers with ErrUnreachable), cancels running handlers' contexts and
// waits until all handlers have returned.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*serverConn, 0, len(s.conns))
		for sc := range s.conns {
			conns = append(conns, sc)
		}
		s.mu.Unlock()
		s.closeErr = s.ln.Close()
		// Connections close before handler contexts are canceled, so a
		// handler returning ctx.Err() cannot slip a misleading reply out:
		// callers see the connection break (ErrUnreachable).
		for _, sc := range conns {
			sc.close()
		}
		s.cancel()
		s.wg.Wait()
	})
	if s.closeErr != nil {
		return fmt.Errorf("transport: close listener %s: %w", s.ln.Addr(), s.closeErr)
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			// Typically EMFILE: keep serving existing connections and retry
			// rather than give up on the listener.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			s.o.Logf("transport: accept on %s: %v; retrying in %v", s.Addr(), err, backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		full := s.o.MaxConnections > 0 && len(s.conns) >= s.o.MaxConnections
		s.mu.Unlock()
		if full {
			if n := s.rejected.Add(1); n&(n-1) == 0 { // 1, 2, 4, 8 ...: a flood does not flood the log
				s.o.Logf("transport: server %s: closing a connection from %s: %d connections open (MaxConnections); %d refused so far",
					s.Addr(), conn.RemoteAddr(), s.o.MaxConnections, n)
			}
			conn.Close()
			continue
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			if rc, err := tc.SyscallConn(); err == nil {
				if err := setUnackedTimeout(rc, s.o.UnackedTimeout); err != nil {
					s.o.Logf("transport: setting TCP_USER_TIMEOUT on a connection from %s: %v", conn.RemoteAddr(), err)
				}
			}
		}
		if s.o.ServerTLS != nil {
			// The handshake runs on the connection's goroutine, under the
			// hello's deadline.
			conn = tls.Server(conn, s.o.ServerTLS)
		}
		ctx, cancel := context.WithCancel(s.ctx)
		sc := &serverConn{
			s:        s,
			conn:     conn,
			remote:   conn.RemoteAddr().String(),
			ctx:      ctx,
			cancel:   cancel,
			sem:      make(chan struct{}, s.o.MaxConcurrentHandlers),
			inflight: make(map[uint64]context.CancelFunc),
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			cancel()
			conn.Close()
			return
		}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go sc.serve()
	}
}

// serverConn is one accepted connection.
type serverConn struct {
	s      *Server
	conn   net.Conn
	remote string // peer's socket address, for logs
	from   string // peer's advertised node address, from its hello
	ctx    context.Context
	cancel context.CancelFunc
	w      *connWriter
	sem    chan struct{} // bounds running handlers
	// deadline: a read deadline is set (only the connection's goroutine
	// touches it).
	deadline   bool
	frameArmed bool // the current frame's FrameTimeout deadline is set

	mu       sync.Mutex
	inflight map[uint64]context.CancelFunc // for cancel frames

	closeOnce sync.Once
}

func (sc *serverConn) logf(format string, args ...any) {
	sc.s.o.Logf("transport: server %s, connection from %s (%s): %s",
		sc.s.Addr(), sc.remote, sc.from, fmt.Sprintf(format, args...))
}

// close tears the connection down; safe to call more than once.
func (sc *serverConn) close() {
	sc.closeOnce.Do(func() {
		// Writer and socket first, handlers' contexts after (see Close).
		sc.mu.Lock()
		w := sc.w
		sc.mu.Unlock()
		if w != nil {
			w.closeNow(ErrClosed)
		}
		sc.conn.Close()
		sc.cancel()
	})
}

func (sc *serverConn) serve() {
	defer func() {
		sc.close()
		// close() may have run before the writer existed; stop it here so
		// its goroutine cannot outlive the connection.
		sc.mu.Lock()
		w := sc.w
		sc.mu.Unlock()
		if w != nil {
			w.closeNow(ErrClosed)
		}
		sc.s.mu.Lock()
		delete(sc.s.conns, sc)
		sc.s.mu.Unlock()
		sc.s.wg.Done()
	}()
	// 16 KiB holds many small frames per read; a large payload is read
	// past the buffer straight into its own (readPayload).
	br := bufio.NewReaderSize(sc.conn, 16<<10)
	hbuf := make([]byte, headerLen)
	max := sc.s.o.MaxFrameSize

	// The hello must arrive promptly: a connection that never speaks should
	// not hold a goroutine forever.
	sc.conn.SetReadDeadline(time.Now().Add(sc.s.o.DialTimeout))
	h, err := readHeader(br, hbuf)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			sc.logf("closing: reading hello: %v", err)
		}
		return
	}
	if h.typ == frameHello && h.kind != protocolVersion {
		// Another version of ringkv: say so, so that its operator reads
		// more than a closed connection.
		msg := fmt.Sprintf("peer protocol version %d is not supported: this node (%s) speaks version %d", h.kind, sc.s.Addr(), protocolVersion)
		sc.logf("closing: %s", msg)
		sc.conn.SetWriteDeadline(time.Now().Add(sc.s.o.DialTimeout))
		sc.conn.Write(appendFrame(nil, 0, frameError, errCodeProtocol, 0, []byte(msg)))
		return
	}
	if h.typ != frameHello || h.kind != protocolVersion || h.length < frameOverhead || h.payloadLen() > maxHelloPayload {
		sc.logf("closing: expected hello frame of protocol version %d, got %s frame (kind %d, length %d)",
			protocolVersion, frameTypeName(h.typ), h.kind, h.length)
		return
	}
	hello := make([]byte, h.payloadLen())
	if _, err := io.ReadFull(br, hello); err != nil {
		sc.logf("closing: reading hello: %v", err)
		return
	}
	sc.from = string(hello)
	sc.conn.SetReadDeadline(time.Time{})
	if tc, ok := sc.conn.(*tls.Conn); ok {
		// The handshake is done (the hello was read through it).
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			sc.ctx = context.WithValue(sc.ctx, identityKey{}, certs[0].Subject.CommonName)
		}
	}

	// The writer starts only now; close() tolerates a nil writer because
	// it may run (from Server.Close) before this point.
	w := newConnWriter(sc.conn, sc.s.o.WriteTimeout, func(err error) {
		sc.logf("closing: write failed: %v", err)
		sc.close()
	})
	sc.mu.Lock()
	sc.w = w
	sc.mu.Unlock()
	if sc.ctx.Err() != nil {
		w.closeNow(ErrClosed)
		return
	}

	for {
		if err := sc.awaitFrame(br); err != nil {
			if sc.ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				sc.logf("closing: read: %v", err)
			}
			return
		}
		sc.frameDeadline(br, headerLen)
		h, err := readHeader(br, hbuf)
		if err != nil {
			if sc.ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				sc.logf("closing: read: %v", err)
				sc.noteTimeout(err)
			}
			return
		}
		if err := checkLength(h, max); err != nil {
			sc.logf("closing: %v", err)
			if errors.Is(err, ErrFrameTooLarge) && h.typ == frameRequest {
				sc.refuseAndClose(h)
			}
			return
		}
		switch h.typ {
		case frameRequest:
			sc.frameDeadline(br, h.payloadLen())
			payload, err := readPayload(br, h.payloadLen())
			if err != nil {
				sc.logf("closing: reading request %d: %v", h.id, err)
				sc.noteTimeout(err)
				return
			}
			// Backpressure: with the handler slots full we stop reading.
			select {
			case sc.sem <- struct{}{}:
			case <-sc.ctx.Done():
				return
			}
			sc.startHandler(h, payload)
		case frameCancel:
			if h.length != frameOverhead {
				sc.logf("closing: cancel frame with %d payload bytes", h.payloadLen())
				return
			}
			sc.mu.Lock()
			cancel := sc.inflight[h.id]
			sc.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		default:
			sc.logf("closing: unexpected %s frame from client", frameTypeName(h.typ))
			return
		}
	}
}

// awaitFrame waits for the first byte of the next frame under
// ServerIdleTimeout. It returns at once when bytes are buffered. When the
// deadline passes with handlers still running, the client is waiting for
// their replies, not idle: it keeps waiting.
func (sc *serverConn) awaitFrame(br *bufio.Reader) error {
	sc.frameArmed = false
	if br.Buffered() > 0 {
		return nil
	}
	idle := sc.s.o.ServerIdleTimeout
	for {
		if idle > 0 {
			sc.conn.SetReadDeadline(time.Now().Add(idle))
			sc.deadline = true
		} else if sc.deadline {
			sc.conn.SetReadDeadline(time.Time{})
			sc.deadline = false
		}
		_, err := br.Peek(1)
		if err == nil {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if len(sc.sem) > 0 && sc.ctx.Err() == nil {
				continue
			}
			sc.s.timedOut.Add(1)
			return fmt.Errorf("idle for %v (ServerIdleTimeout): %w", idle, err)
		}
		return err
	}
}

// frameDeadline gives the rest of the current frame FrameTimeout to
// arrive, from the first time its next n bytes are not all buffered
// already; later waits in the same frame keep that deadline.
func (sc *serverConn) frameDeadline(br *bufio.Reader, n int) {
	if sc.frameArmed || br.Buffered() >= n {
		return
	}
	sc.frameArmed = true
	if d := sc.s.o.FrameTimeout; d > 0 {
		sc.conn.SetReadDeadline(time.Now().Add(d))
		sc.deadline = true
	} else if sc.deadline {
		sc.conn.SetReadDeadline(time.Time{})
		sc.deadline = false
	}
}

// noteTimeout counts a read that ran into FrameTimeout.
func (sc *serverConn) noteTimeout(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		sc.s.timedOut.Add(1)
	}
}

// ServerStats are a server's counters of refused and timed-out connections.
type ServerStats struct {
	Connections int    // open now
	Rejected    uint64 // closed at once over MaxConnections
	TimedOut    uint64 // closed by ServerIdleTimeout or FrameTimeout
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return ServerStats{Connections: n, Rejected: s.rejected.Load(), TimedOut: s.timedOut.Load()}
}

// refuseAndClose answers an oversize request with an error frame, so the
// caller learns why, then closes. It half-closes and discards what the
// client is still sending for a moment: closing a socket with unread input
// makes the kernel send a reset, which could destroy the error frame before
// the client reads it.
func (sc *serverConn) refuseAndClose(h header) {
	msg := fmt.Sprintf("request frame of %d bytes exceeds server max frame size %d", h.length, sc.s.o.MaxFrameSize)
	if err := sc.w.enqueue(false, nil, h.id, frameError, errCodeTooLargeClosing, 0, []byte(msg)); err != nil {
		return
	}
	sc.w.flushAndStop(time.Second)
	if tc, ok := sc.conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	sc.conn.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(sc.conn, int64(h.length)+1<<20))
}

func (sc *serverConn) startHandler(h header, payload []byte) {
	var deadline time.Time
	if h.timeout > 0 {
		deadline = time.Now().Add(time.Duration(h.timeout) * time.Millisecond)
	}
	ctx, cancel := newRequestContext(sc.ctx, deadline)
	sc.mu.Lock()
	sc.inflight[h.id] = cancel
	sc.mu.Unlock()
	sc.s.wg.Add(1) // the connection loop's own count keeps the group above zero
	j := handlerJob{sc: sc, ctx: ctx, cancel: cancel, id: h.id, kind: h.kind, payload: payload}
	select {
	case sc.s.jobs <- j: // an idle handler goroutine takes it
	default:
		sc.s.wg.Add(1)
		go sc.s.handlerLoop(j)
	}
}

// handlerJob is one request handed to a handler goroutine.
type handlerJob struct {
	sc      *serverConn
	ctx     context.Context
	cancel  context.CancelFunc
	id      uint64
	kind    uint8
	payload []byte
}

// handlerIdle is how long a handler goroutine waits for another request
// before it exits.
const handlerIdle = 5 * time.Second

// handlerLoop runs j, then the requests handed to it while it is idle,
// until it has waited handlerIdle for one or the server closes. Handler
// goroutines are kept rather than started per request because a request
// goes deep (decode, replica, engine commit): a new goroutine's small
// stack was grown and copied several times on every request, a sixth of a
// replica's CPU time under a write load. A goroutine kept busy keeps its
// grown stack.
func (s *Server) handlerLoop(j handlerJob) {
	defer s.wg.Done()
	idle := time.NewTimer(handlerIdle)
	defer idle.Stop()
	for {
		j.sc.runHandler(j.ctx, j.cancel, j.id, j.kind, j.payload)
		j = handlerJob{}
		idle.Reset(handlerIdle)
		select {
		case j = <-s.jobs:
		case <-idle.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

func (sc *serverConn) runHandler(ctx context.Context, cancel context.CancelFunc, id uint64, kind uint8, payload []byte) {
	defer sc.s.wg.Done()
	resp, err := sc.callHandler(ctx, kind, payload)
	cancel()
	sc.mu.Lock()
	delete(sc.inflight, id)
	sc.mu.Unlock()
	<-sc.sem

	if err != nil {
		msg := err.Error()
		if len(msg) > maxErrorMessage {
			msg = msg[:maxErrorMessage]
		}
		sc.w.enqueue(true, sc.ctx.Done(), id, frameError, errCodeHandler, 0, []byte(msg))
		return
	}
	if frameOverhead+len(resp) > sc.s.o.MaxFrameSize {
		msg := fmt.Sprintf("response of %d bytes to kind %d exceeds server max frame size %d", len(resp), kind, sc.s.o.MaxFrameSize)
		sc.logf("refusing to send: %s", msg)
		sc.w.enqueue(true, sc.ctx.Done(), id, frameError, errCodeTooLarge, 0, []byte(msg))
		return
	}
	// An enqueue error means the connection is gone; the caller already
	// got ErrUnreachable, so there is no one to tell.
	sc.w.enqueue(true, sc.ctx.Done(), id, frameResponse, kind, 0, resp)
}

// callHandler runs the handler, turning a panic into an error reply: one bad
// request must not take the node down.
type identityKey struct{}

// PeerIdentity returns the common name of the verified certificate the
// calling peer presented (mutual TLS), or "" without one.
func PeerIdentity(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(string)
	return id
}

func (sc *serverConn) callHandler(ctx context.Context, kind uint8, payload []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			sc.logf("handler for kind %d panicked: %v\n%s", kind, r, debug.Stack())
			resp, err = nil, fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return sc.s.h.Handle(ctx, sc.from, kind, payload)
}
