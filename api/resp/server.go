package resp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrServerClosed is returned by Serve and ListenAndServe after Close.
var ErrServerClosed = errors.New("resp: server closed")

// Options configure a Server. Zero values mean the defaults.
type Options struct {
	// MaxValueSize is the largest argument (key or value) a command may carry.
	// A bigger argument is read off the wire and dropped, the command is
	// answered with "ERR value too large ...", and the connection stays
	// usable. Default 1 MiB.
	MaxValueSize int
	// MaxRequestSize bounds the sum of a command's argument bytes (MSET with
	// many values); past it the command is answered with an error like an
	// oversized value. Default 64 MiB.
	MaxRequestSize int
	// MaxBulkLen is the largest bulk length a client may declare; a bigger
	// one is a protocol error that closes the connection. Default 512 MiB
	// (Redis' proto-max-bulk-len).
	MaxBulkLen int
	// MaxMultiBulkLen is the most elements one command may have; more is a
	// protocol error. Default 1,048,576.
	MaxMultiBulkLen int
	// ReadTimeout bounds the time a command may take to arrive once the
	// server has started waiting for its rest: a client that sends part
	// of a command and then trickles the remainder (a "slowloris", one
	// byte per second) is closed when it runs out, however steadily it
	// sends. The clock starts at the first read that waits in the middle
	// of a command, so a command whose bytes all arrived together never
	// sees it. Default 30 s; negative: no limit.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection that sends no command for this long
	// (Redis' "timeout"). Zero: never.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write of replies to a client: a client that
	// stops reading its replies (a pipeline that never reads) is closed
	// once the server has waited this long to write to it. Before that the
	// server stops reading the client's commands (see [Options].MaxOutputBuffer),
	// so such a client holds a bounded amount of memory. Default 30 s;
	// negative: no limit.
	WriteTimeout time.Duration
	// LoginTimeout bounds how long a connection may take to complete its
	// TLS handshake and, when authentication is required, to authenticate:
	// past it the connection is closed, so that connections that never
	// log in cannot hold the MaxConnections slots. Default 10 s; negative:
	// no limit.
	LoginTimeout time.Duration
	// MaxConnections bounds the client connections open at once (Redis'
	// maxclients). A connection over it is answered "-ERR max number of
	// clients reached" and closed. Default 10,000; negative: no limit.
	MaxConnections int
	// MaxOutputBuffer bounds the bytes of replies a connection holds
	// that the client has not yet been sent (replies of pipelined commands
	// that finished before the ones ahead of them, and those expected from
	// the commands running). Past it the server stops decoding the
	// connection's commands until the replies are written, so a client
	// that never reads its replies makes it hold about this much (plus the
	// replies of the commands running when it was reached — a batch of
	// GETs stays about 1 MiB of them — and the kernel's socket buffer),
	// until WriteTimeout closes it. Default 1 MiB.
	MaxOutputBuffer int
	// Password, if set, must be given with AUTH (or HELLO ... AUTH default
	// <password>) before any other command.
	Password string
	// Authenticate, if set, checks a user name and password (AUTH user
	// pass, AUTH pass for the user "default", HELLO ... AUTH user pass)
	// instead of Password: every connection must then authenticate before
	// its first command. It must be safe for concurrent use; it may be slow
	// (a password hash), it runs on the connection's goroutine.
	Authenticate func(user, pass string) bool
	// Logf receives the server's log lines. Nil: silent.
	Logf func(format string, args ...any)
	// OnCommand, if set, is called after each command with its lower-case
	// name ("unknown" for unknown commands), its duration, and whether it
	// answered an error. It must be fast and safe for concurrent use.
	OnCommand func(name string, d time.Duration, failed bool)
	// BaseContext, if set, is the context every connection's commands
	// derive from (its values reach the Backend). Default: Background.
	BaseContext context.Context
}

// Defaults of the Options that bound what one client can make the server
// hold (see Options).
const (
	DefaultReadTimeout     = 30 * time.Second
	DefaultLoginTimeout    = 10 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
	DefaultMaxConnections  = 10000
	DefaultMaxOutputBuffer = 1 << 20
)

// durationDefault is d with zero meaning def and a negative value "none" (0).
func durationDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// authRequired reports whether connections must authenticate.
func (o *Options) authRequired() bool { return o.Password != "" || o.Authenticate != nil }

func (o *Options) fill() {
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = 1 << 20
	}
	if o.MaxRequestSize <= 0 {
		o.MaxRequestSize = 64 << 20
	}
	if o.MaxBulkLen <= 0 {
		o.MaxBulkLen = 512 << 20
	}
	if o.MaxMultiBulkLen <= 0 {
		o.MaxMultiBulkLen = 1 << 20
	}
	o.ReadTimeout = durationDefault(o.ReadTimeout, DefaultReadTimeout)
	o.LoginTimeout = durationDefault(o.LoginTimeout, DefaultLoginTimeout)
	o.WriteTimeout = durationDefault(o.WriteTimeout, DefaultWriteTimeout)
	if o.IdleTimeout < 0 {
		o.IdleTimeout = 0
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.MaxOutputBuffer <= 0 {
		o.MaxOutputBuffer = DefaultMaxOutputBuffer
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Server is a RESP server in front of a Backend.
type Server struct {
	b    Backend
	opt  Options
	cmds map[string]*command
	// setCmd and getCmd are the SET and GET commands; setBatcher and
	// getBatcher are the Backend as a SetBatcher and a GetBatcher, nil if
	// it is not one (see pipeline.go).
	setCmd, getCmd *command
	setBatcher     SetBatcher
	getBatcher     GetBatcher

	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
	// shuttingDown: Shutdown has begun (no new connections).
	shuttingDown bool
	wg           sync.WaitGroup

	nextID        atomic.Int64
	totalConns    atomic.Uint64
	totalCommands atomic.Uint64
	protoErrors   atomic.Uint64
	unknown       cmdStats
	peakInFlight  atomic.Int64 // most pipelined commands one connection had in flight
	rejectedConns atomic.Uint64
	rejecting     atomic.Int64 // goodbyes (reject) in progress
	timeouts      atomic.Uint64
	// alwaysConcurrent turns off running quick commands inline, so tests can
	// drive the concurrent path with a fast Backend.
	alwaysConcurrent atomic.Bool
}

// NewServer returns a server that answers commands with b.
func NewServer(b Backend, o Options) *Server {
	o.fill()
	base := o.BaseContext
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancel(base)
	s := &Server{
		b:         b,
		opt:       o,
		ctx:       ctx,
		cancel:    cancel,
		start:     time.Now(),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	s.cmds = newCommandTable()
	s.setCmd, s.getCmd = s.cmds["set"], s.cmds["get"]
	s.setBatcher, _ = b.(SetBatcher)
	s.getBatcher, _ = b.(GetBatcher)
	return s
}

// ListenAndServe listens on the TCP address addr and serves it.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Close, serving each in its own
// goroutine. It closes ln when it returns and returns ErrServerClosed after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
		s.wg.Done()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if retryableAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.opt.Logf("resp: accept: %v; retrying in %v", err, backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.mu.Lock()
		if s.closed || s.shuttingDown {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		if m := s.opt.MaxConnections; m > 0 && len(s.conns) >= m {
			s.wg.Add(1)
			s.mu.Unlock()
			s.rejectedConns.Add(1)
			go s.reject(nc)
			continue
		}
		c := s.newConn(nc)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.totalConns.Add(1)
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Bounds of the goodbye to a connection over MaxConnections.
const (
	maxRejecting  = 256         // goodbyes in progress; past it, close at once
	rejectLinger  = time.Second // how long a goodbye waits for the client
	rejectDiscard = 64 << 10    // input read and dropped meanwhile
)

var errMaxClients = []byte("-ERR max number of clients reached\r\n")

// reject answers a connection over MaxConnections with Redis' error and
// closes it. It half-closes first and reads what the client sends for a
// moment (bounded in time and bytes): closing a socket with unread input
// makes the kernel reset the connection, which could destroy the error
// before the client reads it.
func (s *Server) reject(nc net.Conn) {
	defer s.wg.Done()
	defer nc.Close()
	if s.rejecting.Add(1) > maxRejecting {
		s.rejecting.Add(-1)
		return
	}
	defer s.rejecting.Add(-1)
	nc.SetDeadline(time.Now().Add(rejectLinger))
	if _, err := nc.Write(errMaxClients); err != nil {
		return
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(nc, rejectDiscard))
}

// retryableAccept reports accept errors worth retrying: timeouts, running
// out of file descriptors, a connection aborted before it was accepted.
func retryableAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.shuttingDown
}

// Shutdown stops the server gracefully: it stops accepting, ends the
// reading side of every connection (a TCP half-close, under TLS too: the
// commands already received still run and their replies are written and
// flushed before the connection closes; a command only partly received is
// dropped, never answered), waits until every connection has finished or
// ctx ends, and then closes what remains (Close).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.Close()
	}
	s.shuttingDown = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		raw := c.nc
		if tc, ok := raw.(*tls.Conn); ok {
			raw = tc.NetConn()
		}
		if cr, ok := raw.(interface{ CloseRead() error }); ok && cr.CloseRead() == nil {
			continue
		}
		c.nc.SetReadDeadline(time.Now()) // no half-close: end the reads now
	}
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.opt.Logf("resp: shutdown: closing %d connections still busy: %v", n, ctx.Err())
			return s.Close()
		case <-tick.C:
		}
	}
	return s.Close()
}

// Close stops accepting, closes every client connection, cancels the
// contexts of Backend calls in flight, and waits for all connection
// goroutines to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	var err error
	for ln := range s.listeners {
		if e := ln.Close(); e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	}
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return err
}

// Addrs returns the addresses the server is listening on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for ln := range s.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

// conn is one client connection, served by one goroutine.
type conn struct {
	s    *Server
	nc   net.Conn
	id   int64
	rd   *reader
	bw   *bufio.Writer
	rw   replyWriter
	ctx  context.Context
	born time.Time

	authed bool
	// loggedIn mirrors authed for the login timer (another goroutine).
	loggedIn  atomic.Bool
	stopLogin func() bool
	quit      bool
	// deadline is set when the connection has a read deadline set.
	deadline bool
	p        pipeline // pipelined commands in flight; see pipeline.go

	// Read by CLIENT LIST from other connections.
	last   atomic.Pointer[command]
	lastAt atomic.Int64 // monoNow at the end of the last command; 0 before the first
	proto  atomic.Int32 // mirror of rw.proto

	// Guarded by mu: read by CLIENT LIST from other connections.
	mu      sync.Mutex
	name    string
	libName string
	libVer  string
	lastCmd string
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		s:      s,
		nc:     nc,
		id:     s.nextID.Add(1),
		ctx:    s.ctx,
		born:   time.Now(),
		authed: !s.opt.authRequired(),
	}
	c.loggedIn.Store(c.authed)
	c.rd = newReader(nc, s.opt.MaxMultiBulkLen, int64(s.opt.MaxBulkLen), s.opt.MaxValueSize, s.opt.MaxRequestSize)
	c.bw = bufio.NewWriterSize(timedWriter{nc, s.opt.WriteTimeout}, initialWriteBuf)
	c.rw = replyWriter{w: c.bw, proto: 2}
	c.proto.Store(2)
	c.rd.beforeBlock = c.beforeBlock
	return c
}

// Sizes of a connection's reply buffer: small while the connection is quiet
// (thousands of idle clients should not cost much), the larger size once
// its replies fill half of it between flushes (pipelining clients).
const (
	initialWriteBuf = 4 << 10
	largeWriteBuf   = 32 << 10
)

// beforeBlock runs before every read that may wait for the network: the read
// buffer is empty, so this is when the commands in flight are finished and
// the buffered replies go out (one write for a whole pipeline) — the client
// may wait for them before sending more — and when the read deadline is set:
// IdleTimeout while waiting for a command, and when a command has started
// (first), ReadTimeout for all of the rest of it: later waits in the same
// command keep that deadline, so trickling bytes does not extend it.
func (c *conn) beforeBlock(idle, first bool) error {
	c.drain()
	c.flush()
	if err := c.writeErr(); err != nil {
		return err // the client does not take its replies: stop reading
	}
	if !idle && !first {
		return nil
	}
	o := &c.s.opt
	d := o.ReadTimeout
	if idle {
		d = o.IdleTimeout
	}
	if d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
		c.deadline = true
	} else if c.deadline {
		c.nc.SetReadDeadline(time.Time{})
		c.deadline = false
	}
	return nil
}

func (c *conn) flush() {
	n := c.bw.Buffered()
	if n == 0 {
		return
	}
	if c.bw.Flush() != nil { // a failure is sticky; the next read or flush notices.
		return
	}
	if n >= c.bw.Size()/2 && c.bw.Size() < largeWriteBuf {
		c.bw = bufio.NewWriterSize(timedWriter{c.nc, c.s.opt.WriteTimeout}, largeWriteBuf)
		c.rw.w = c.bw
	}
}

// timedWriter gives every write to the connection its own WriteTimeout
// deadline. Setting it only before explicit flushes is not enough: the
// bufio.Writer also writes on its own when a deep pipeline's replies fill
// it, and that write would run under a deadline set long before (already
// past after an idle spell) or block forever on a client that stopped
// reading.
type timedWriter struct {
	nc net.Conn
	d  time.Duration
}

func (w timedWriter) Write(b []byte) (int, error) {
	if w.d > 0 {
		w.nc.SetWriteDeadline(time.Now().Add(w.d))
	}
	return w.nc.Write(b)
}

// login bounds the TLS handshake and, when authentication is required,
// the time until the connection authenticates (LoginTimeout).
func (c *conn) login() bool {
	d := c.s.opt.LoginTimeout
	if d <= 0 {
		return true
	}
	if !c.loggedIn.Load() {
		t := time.AfterFunc(d, func() {
			if !c.loggedIn.Load() {
				c.s.timeouts.Add(1)
				c.s.opt.Logf("resp: closing client %d (%v): not authenticated within %v (LoginTimeout)", c.id, c.nc.RemoteAddr(), d)
				c.nc.Close()
			}
		})
		c.stopLogin = t.Stop
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(d))
		err := tc.Handshake()
		tc.SetDeadline(time.Time{})
		if err != nil {
			c.s.opt.Logf("resp: client %d (%v): TLS handshake: %v", c.id, c.nc.RemoteAddr(), err)
			return false
		}
	}
	return true
}

func (c *conn) serve() {
	// Deferred calls run in reverse: recover, close the connection, wait for
	// pipelined commands still running (after a panic or a write error),
	// then end the workers that ran them.
	defer c.stopWorkers()
	defer c.abandon()
	defer c.nc.Close()
	defer func() {
		if r := recover(); r != nil {
			c.s.opt.Logf("resp: panic serving %v: %v", c.nc.RemoteAddr(), r)
		}
	}()
	defer func() {
		if c.stopLogin != nil {
			c.stopLogin()
		}
	}()
	if !c.login() {
		return
	}
	for !c.quit {
		req, err := c.rd.ReadRequest()
		if err != nil {
			c.drain() // the replies of the commands before come first
			var pe *ProtocolError
			var ne net.Error
			if c.writeErr() != nil {
				c.noteWriteErr(c.writeErr())
				return
			}
			if errors.As(err, &ne) && ne.Timeout() {
				c.s.timeouts.Add(1)
				c.s.opt.Logf("resp: closing client %d (%v): %v", c.id, c.nc.RemoteAddr(), c.timeoutReason())
			}
			if errors.As(err, &pe) {
				c.s.protoErrors.Add(1)
				c.s.opt.Logf("resp: protocol error from client %d (%v): %s", c.id, c.nc.RemoteAddr(), pe.Msg)
				c.rw.Error("ERR " + pe.Error())
			}
			break
		}
		c.handle(req)
		if c.rd.Buffered() == 0 {
			c.drain()
			c.flush()
		}
		if err := c.writeErr(); err != nil {
			c.noteWriteErr(err)
			return
		}
	}
	c.drain()
	c.flush()
	c.noteWriteErr(c.writeErr())
}

// noteWriteErr logs and counts a write that ran into WriteTimeout.
func (c *conn) noteWriteErr(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.s.timeouts.Add(1)
		c.s.opt.Logf("resp: closing client %d (%v): not reading its replies for %v (WriteTimeout)", c.id, c.nc.RemoteAddr(), c.s.opt.WriteTimeout)
	}
}

// timeoutReason says which deadline a read that timed out ran into.
func (c *conn) timeoutReason() string {
	if c.rd.idle {
		return fmt.Sprintf("idle for %v (IdleTimeout)", c.s.opt.IdleTimeout)
	}
	return fmt.Sprintf("command not complete within %v (ReadTimeout)", c.s.opt.ReadTimeout)
}

func (c *conn) writeErr() error {
	// bufio.Writer keeps its first write error; a zero-length write reports it.
	_, err := c.bw.Write(nil)
	return err
}
