package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Frame types (see the package documentation for the layout).
const (
	frameHello    uint8 = 1
	frameRequest  uint8 = 2
	frameResponse uint8 = 3
	frameError    uint8 = 4
	frameCancel   uint8 = 5
)

// Error codes, carried in the kind byte of an error frame.
const (
	errCodeHandler  uint8 = 0
	errCodeTooLarge uint8 = 1 // reply too large; the connection stays up
	// errCodeTooLargeClosing: the request was too large; the server closes
	// the connection after this frame (the rest of the oversize frame cannot
	// be skipped cheaply), so the client must stop using it at once.
	errCodeTooLargeClosing uint8 = 2
	// errCodeProtocol: the server does not speak the protocol version of
	// the client's hello; it closes the connection after this frame.
	errCodeProtocol uint8 = 3
)

const (
	protocolVersion = 1
	headerLen       = 18 // length(4) id(8) type(1) kind(1) timeout(4)
	frameOverhead   = headerLen - 4
	maxHelloPayload = 4096
	// maxErrorMessage bounds an error frame's text so a handler returning a
	// huge error cannot produce an oversize frame.
	maxErrorMessage = 64 << 10
)

type header struct {
	length  uint32 // bytes after the length field
	id      uint64
	typ     uint8
	kind    uint8
	timeout uint32 // ms
}

func (h header) payloadLen() int { return int(h.length) - frameOverhead }

func frameTypeName(t uint8) string {
	switch t {
	case frameHello:
		return "hello"
	case frameRequest:
		return "request"
	case frameResponse:
		return "response"
	case frameError:
		return "error"
	case frameCancel:
		return "cancel"
	}
	return fmt.Sprintf("unknown(%d)", t)
}

// readHeader reads and decodes one frame header into buf (len headerLen,
// reused by the caller so the hot loop does not allocate).
func readHeader(r io.Reader, buf []byte) (header, error) {
	if _, err := io.ReadFull(r, buf[:headerLen]); err != nil {
		return header{}, err
	}
	return header{
		length:  binary.BigEndian.Uint32(buf[0:4]),
		id:      binary.BigEndian.Uint64(buf[4:12]),
		typ:     buf[12],
		kind:    buf[13],
		timeout: binary.BigEndian.Uint32(buf[14:18]),
	}, nil
}

// payloadChunk is the most a frame's payload is given before its bytes
// arrive; past it the buffer grows (doubling) as they do.
const payloadChunk = 64 << 10

// readPayload reads an n-byte payload (n already checked against the max
// frame size). Memory follows the bytes that arrive, not the declared
// length: a peer that declares a large frame and sends little of it makes
// the receiver hold about what it sent.
func readPayload(br *bufio.Reader, n int) ([]byte, error) {
	if n <= payloadChunk || br.Buffered() >= n {
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		return b, err
	}
	b := make([]byte, 0, payloadChunk)
	for len(b) < n {
		if len(b) == cap(b) {
			grown := make([]byte, len(b), min(n, 2*cap(b)))
			copy(grown, b)
			b = grown
		}
		k, err := io.ReadFull(br, b[len(b):cap(b)])
		b = b[:len(b)+k]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// checkLength validates a header's length field against max. It returns a
// descriptive error for a frame too short to hold its header or longer than
// max; the latter wraps ErrFrameTooLarge.
func checkLength(h header, max int) error {
	if h.length < frameOverhead {
		return fmt.Errorf("malformed frame: length %d shorter than the %d-byte header", h.length, frameOverhead)
	}
	if int64(h.length) > int64(max) {
		return fmt.Errorf("%s frame of %d bytes exceeds max frame size %d: %w",
			frameTypeName(h.typ), h.length, max, ErrFrameTooLarge)
	}
	return nil
}

func appendFrame(b []byte, id uint64, typ, kind uint8, timeout uint32, payload []byte) []byte {
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(frameOverhead+len(payload)))
	binary.BigEndian.PutUint64(h[4:12], id)
	h[12] = typ
	h[13] = kind
	binary.BigEndian.PutUint32(h[14:18], timeout)
	b = append(b, h[:]...)
	return append(b, payload...)
}

// timeoutMillis converts the time left until deadline into the wire's
// timeout field: rounded up so a server never sees a shorter deadline than
// the caller has, at least 1 (0 means "no deadline"), clamped to uint32.
// ok is false when the deadline has passed.
func timeoutMillis(deadline time.Time, has bool) (ms uint32, ok bool) {
	if !has {
		return 0, true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return 0, false
	}
	m := (d + time.Millisecond - 1) / time.Millisecond
	if m > math.MaxUint32 {
		m = math.MaxUint32
	}
	return uint32(m), true
}

var errWriterClosed = errors.New("connection writer closed")

// Process-wide batching counters (one atomic add per write call, not per
// frame): framesWritten/writeCalls is the average frames per syscall.
var writeCalls, framesWritten atomic.Uint64

const (
	// maxBuffered bounds bytes waiting for the writer per connection; beyond
	// it senders wait, so a slow peer turns into backpressure, not memory.
	maxBuffered = 4 << 20
	// maxKeptBuffer: a buffer grown beyond this by a large frame is dropped
	// after use instead of pinning its memory for the connection's life.
	maxKeptBuffer = 1 << 20
)

// connWriter owns the writing side of a connection. Senders append complete
// frames to buf under mu; the writer goroutine swaps buf with an empty spare
// and writes it in one call. While a write is in progress new frames collect
// in the other buffer, so under load many frames share one syscall, and an
// idle connection still sends a lone frame at once (no flush timer).
type connWriter struct {
	conn    net.Conn
	timeout time.Duration
	onError func(error) // called once if a write fails

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	err      error // sticky; set when closed or a write failed
	stopping bool  // flush what is buffered, then exit
	waiters  bool  // someone waits on space
	nframes  int   // frames in buf, for the batching counters
	space    chan struct{}

	wake chan struct{} // cap 1: buf became non-empty or stopping
	quit chan struct{} // closed by closeNow
	done chan struct{} // closed when the loop exits
	once sync.Once
}

func newConnWriter(conn net.Conn, timeout time.Duration, onError func(error)) *connWriter {
	w := &connWriter{
		conn:    conn,
		timeout: timeout,
		onError: onError,
		// buf and spare grow on first use (append), so a connection that
		// never sends costs no write buffers.
		space: make(chan struct{}),
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go w.loop()
	return w
}

// enqueue appends one frame. If the buffer is full it waits for the writer
// when block is true (until cancel is closed), and fails at once otherwise.
// A frame is either fully buffered or not at all, so a failed enqueue means
// nothing of it reached the peer.
func (w *connWriter) enqueue(block bool, cancel <-chan struct{}, id uint64, typ, kind uint8, timeout uint32, payload []byte) error {
	n := headerLen + len(payload)
	w.mu.Lock()
	for w.err == nil && !w.stopping && len(w.buf) > 0 && len(w.buf)+n > maxBuffered {
		if !block {
			w.mu.Unlock()
			return errors.New("connection write buffer full")
		}
		w.waiters = true
		sp := w.space
		w.mu.Unlock()
		select {
		case <-sp:
		case <-cancel:
			return errCanceledWait
		case <-w.quit:
		}
		w.mu.Lock()
	}
	if w.err != nil || w.stopping {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = errWriterClosed
		}
		return err
	}
	wasEmpty := len(w.buf) == 0
	w.buf = appendFrame(w.buf, id, typ, kind, timeout, payload)
	w.nframes++
	w.mu.Unlock()
	if wasEmpty {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

var errCanceledWait = errors.New("canceled while waiting for write buffer space")

func (w *connWriter) loop() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
		case <-w.quit:
			return
		}
		// Give goroutines that are about to send (woken callers, finishing
		// handlers) one scheduling round to append to this batch: the first
		// frame of a burst would otherwise go out alone.
		runtime.Gosched()
		for {
			w.mu.Lock()
			out := w.buf
			if len(out) == 0 {
				stop := w.stopping
				w.mu.Unlock()
				if stop {
					return
				}
				break
			}
			frames := w.nframes
			w.nframes = 0
			w.buf = w.spare[:0]
			w.spare = nil
			if w.waiters {
				close(w.space)
				w.space = make(chan struct{})
				w.waiters = false
			}
			w.mu.Unlock()

			if w.timeout > 0 {
				w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
			}
			writeCalls.Add(1)
			framesWritten.Add(uint64(frames))
			if _, err := w.conn.Write(out); err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = fmt.Errorf("write: %w", err)
				}
				w.mu.Unlock()
				w.onError(err)
				return
			}
			w.mu.Lock()
			if cap(out) <= maxKeptBuffer {
				w.spare = out[:0]
			} else {
				w.spare = nil
			}
			w.mu.Unlock()
			// Drain again before sleeping: frames appended during the write
			// go out now; the wake they left costs only an empty pass later.
		}
	}
}

// closeNow stops the writer without flushing; later enqueues fail with err.
func (w *connWriter) closeNow(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.once.Do(func() { close(w.quit) })
}

// flushAndStop writes what is buffered, then stops the writer; it waits at
// most d. Later enqueues fail.
func (w *connWriter) flushAndStop(d time.Duration) {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
}
