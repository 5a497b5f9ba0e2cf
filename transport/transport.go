package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"time"
)

// Handler serves requests arriving at a node. from is the caller's advertised
// node address (from the connection's hello frame), kind the caller-defined
// message type. The payload belongs to the handler (it is not reused by the
// transport). A returned error reaches the caller as a *RemoteError carrying
// err.Error(); error identity does not cross the network.
type Handler interface {
	Handle(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
	return f(ctx, from, kind, payload)
}

// Transport sends requests to other nodes. Implementations are safe for
// concurrent use.
type Transport interface {
	// Call sends (kind, payload) to the node at addr and waits for its reply.
	// The payload may be reused by the caller once Call returns. See the
	// package documentation for the errors it returns.
	Call(ctx context.Context, addr string, kind uint8, payload []byte) ([]byte, error)
	// Close releases the transport's connections; in-flight and later calls
	// fail with ErrClosed.
	Close() error
}

var (
	// ErrUnreachable: the peer could not be reached or the connection to it
	// broke while the call was in flight.
	ErrUnreachable = errors.New("transport: peer unreachable")
	// ErrNotSent: the request was never sent (the peer could not be
	// dialled, or the call ended while waiting for a connection), so the
	// peer cannot have acted on it. It is wrapped together with
	// ErrUnreachable or the context's error; a caller may safely send the
	// same request elsewhere.
	ErrNotSent = errors.New("transport: request not sent")
	// ErrRemote: the remote handler returned an error (see RemoteError).
	ErrRemote = errors.New("transport: remote handler error")
	// ErrFrameTooLarge: a request or reply exceeded Options.MaxFrameSize.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrClosed: the transport (client, server or network node) was closed.
	ErrClosed = errors.New("transport: closed")
)

// RemoteError is the error a remote handler returned, as seen by the caller.
// errors.Is(err, ErrRemote) is true for it.
type RemoteError struct {
	Addr    string // the node that ran the handler
	Kind    uint8  // the request's kind
	Message string // the handler error's Error() text
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("transport: remote %s (kind %d): %s", e.Addr, e.Kind, e.Message)
}

// Unwrap makes errors.Is(err, ErrRemote) hold.
func (e *RemoteError) Unwrap() error { return ErrRemote }

// Options configures the TCP client and server. The zero value gives the
// defaults noted on each field.
type Options struct {
	// MaxFrameSize bounds a frame's length field (14 header bytes plus the
	// payload). Default 16 MiB.
	MaxFrameSize int
	// DialTimeout bounds connecting to a peer (client) and receiving the
	// hello frame of a new connection (server). Default 5 s.
	DialTimeout time.Duration
	// IdleTimeout: the client closes a connection that carried no call for
	// this long (checked every IdleTimeout, so closed after one to two
	// periods). Default 2 min; negative disables. Unused by the server.
	IdleTimeout time.Duration
	// CallTimeout applies to calls whose context has no deadline, so a lost
	// peer cannot hang a caller forever. Default 30 s; negative disables
	// (then such a call waits until the connection breaks).
	CallTimeout time.Duration
	// WriteTimeout: a connection whose peer does not accept written bytes
	// for this long is considered broken. Default 10 s.
	WriteTimeout time.Duration
	// UnackedTimeout: a connection whose sent bytes stay unacknowledged by
	// the peer's kernel this long is aborted (TCP_USER_TIMEOUT, on Linux,
	// on both ends), so that a peer cut off silently breaks the connection
	// and the next call dials afresh once the cut heals. Default: the
	// WriteTimeout (recent kernels apply it to a zero receive window too,
	// and a peer not reading for WriteTimeout is already taken as broken);
	// negative: the system's (many minutes).
	UnackedTimeout time.Duration
	// ServerTLS, when set, makes the server speak TLS (mutual TLS when it
	// requires client certificates, as Peer TLS configs do): the
	// handshake must complete within DialTimeout, and the verified client
	// certificate's common name reaches handlers (PeerIdentity).
	ServerTLS *tls.Config
	// ClientTLS, when set, makes the client speak TLS to every peer; the
	// handshake is part of the dial (a failed one is ErrUnreachable).
	ClientTLS *tls.Config
	// MaxConcurrentHandlers bounds running handlers per server connection.
	// Default 256.
	MaxConcurrentHandlers int
	// ServerIdleTimeout: the server closes a connection that has no
	// handler running and sends nothing for this long (a client's own
	// IdleTimeout closes a healthy idle connection well before). Default
	// 10 min; negative disables.
	ServerIdleTimeout time.Duration
	// FrameTimeout bounds the time the rest of a frame may take to arrive
	// once the server has started waiting for it, so a peer trickling a
	// frame (or stalling in the middle of one) is closed. Default 30 s;
	// negative disables.
	FrameTimeout time.Duration
	// MaxConnections bounds the connections a server keeps open at once
	// (one per calling node and address, plus tools); a connection over
	// it is closed at once, with a log line. Default 1024; negative: no
	// limit.
	MaxConnections int
	// Logf receives connection-level problems (malformed frames, refused
	// oversize frames, handler panics). Default log.Printf.
	Logf func(format string, args ...any)
}

const (
	defaultMaxFrameSize = 16 << 20
	defaultCallTimeout  = 30 * time.Second
)

func (o Options) withDefaults() Options {
	if o.MaxFrameSize <= 0 {
		o.MaxFrameSize = defaultMaxFrameSize
	}
	if o.MaxFrameSize < frameOverhead {
		o.MaxFrameSize = frameOverhead
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = defaultCallTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.UnackedTimeout == 0 {
		o.UnackedTimeout = o.WriteTimeout
	}
	if o.MaxConcurrentHandlers <= 0 {
		o.MaxConcurrentHandlers = 256
	}
	switch {
	case o.ServerIdleTimeout == 0:
		o.ServerIdleTimeout = 10 * time.Minute
	case o.ServerIdleTimeout < 0:
		o.ServerIdleTimeout = 0
	}
	switch {
	case o.FrameTimeout == 0:
		o.FrameTimeout = 30 * time.Second
	case o.FrameTimeout < 0:
		o.FrameTimeout = 0
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 1024
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	return o
}

// ctxError wraps a context's error with the call it ended.
func ctxError(addr string, kind uint8, err error) error {
	return fmt.Errorf("transport: call to %s (kind %d): %w", addr, kind, err)
}

// withDefaultTimeout gives ctx a deadline if it has none, so no call can wait
// forever on a lost message.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
