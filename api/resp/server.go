package resp

import (
	"bufio"
	"context"
	"errors"
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
	// ReadTimeout bounds the wait for the rest of a command once its first
	// byte has arrived. Zero: no limit.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection that sends no command for this long
	// (Redis' "timeout"). Zero: never.
	IdleTimeout time.Duration
	// WriteTimeout bounds each flush of replies to a client. Zero: no limit.
	WriteTimeout time.Duration
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
	wg        sync.WaitGroup

	nextID        atomic.Int64
	totalConns    atomic.Uint64
	totalCommands atomic.Uint64
	protoErrors   atomic.Uint64
	unknown       cmdStats
	peakInFlight  atomic.Int64 // most pipelined commands one connection had in flight
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
		c := s.newConn(nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
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
	return s.closed
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
	quit   bool
	p      pipeline // pipelined commands in flight; see pipeline.go

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
	c.rd = newReader(nc, s.opt.MaxMultiBulkLen, int64(s.opt.MaxBulkLen), s.opt.MaxValueSize, s.opt.MaxRequestSize)
	c.bw = bufio.NewWriterSize(timedWriter{nc, s.opt.WriteTimeout}, 32*1024)
	c.rw = replyWriter{w: c.bw, proto: 2}
	c.proto.Store(2)
	c.rd.beforeBlock = c.beforeBlock
	return c
}

// beforeBlock runs before every read that may wait for the network: the read
// buffer is empty, so this is when the commands in flight are finished and
// the buffered replies go out (one write for a whole pipeline) — the client
// may wait for them before sending more — and when the read deadline is set.
func (c *conn) beforeBlock(idle bool) {
	c.drain()
	c.flush()
	o := &c.s.opt
	var d time.Duration
	if idle {
		d = o.IdleTimeout
	} else {
		d = o.ReadTimeout
	}
	if d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	} else if o.IdleTimeout > 0 || o.ReadTimeout > 0 {
		c.nc.SetReadDeadline(time.Time{})
	}
}

func (c *conn) flush() {
	if c.bw.Buffered() == 0 {
		return
	}
	c.bw.Flush() // a failure is sticky; the next read or flush notices.
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
	for !c.quit {
		req, err := c.rd.ReadRequest()
		if err != nil {
			c.drain() // the replies of the commands before come first
			var pe *ProtocolError
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
			return
		}
	}
	c.drain()
	c.flush()
}

func (c *conn) writeErr() error {
	// bufio.Writer keeps its first write error; a zero-length write reports it.
	_, err := c.bw.Write(nil)
	return err
}
