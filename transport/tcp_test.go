package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// logSink collects log lines; t.Logf cannot be used because server
// goroutines may log after the test returned.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logSink) contains(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func echo(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
	return payload, nil
}

func startServer(t *testing.T, h HandlerFunc, o Options) (*Server, *logSink) {
	t.Helper()
	sink := &logSink{}
	if o.Logf == nil {
		o.Logf = sink.logf
	}
	s, err := Listen("127.0.0.1:0", h, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, sink
}

func newTestClient(t *testing.T, self string, o Options) *Client {
	t.Helper()
	if o.Logf == nil {
		o.Logf = (&logSink{}).logf
	}
	c := NewClient(self, o)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTCPRoundTrip(t *testing.T) {
	s, _ := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		return []byte(fmt.Sprintf("%s|%d|%s", from, kind, p)), nil
	}, Options{})
	c := newTestClient(t, "127.0.0.9:7001", Options{})
	got, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 7, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.9:7001|7|hello"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Empty payloads in both directions.
	got, err = c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 0, nil)
	if err != nil || string(got) != "127.0.0.9:7001|0|" {
		t.Fatalf("empty payload: got %q, %v", got, err)
	}
}

func TestTCPLargePayloads(t *testing.T) {
	s, _ := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		out := make([]byte, len(p))
		for i, b := range p {
			out[i] = ^b
		}
		return out, nil
	}, Options{})
	c := newTestClient(t, "c", Options{})
	req := make([]byte, 8<<20)
	for i := range req {
		req[i] = byte(i * 7)
	}
	got, err := c.Call(ctxTimeout(t, 10*time.Second), s.Addr(), 1, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(req) {
		t.Fatalf("got %d bytes, want %d", len(got), len(req))
	}
	for i := range got {
		if got[i] != ^req[i] {
			t.Fatalf("byte %d: got %x want %x", i, got[i], ^req[i])
		}
	}
}

// Many concurrent callers, handlers finishing in random order: every reply
// must belong to its own request.
func TestTCPConcurrentOutOfOrder(t *testing.T) {
	var maxInFlight, inFlight atomic.Int64
	s, _ := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		return append([]byte(fmt.Sprintf("%s/%d/", from, kind)), p...), nil
	}, Options{})
	c := newTestClient(t, "caller", Options{})
	const callers, calls = 64, 150
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				req := []byte(fmt.Sprintf("g%d-i%d", g, i))
				kind := uint8(g*calls + i)
				got, err := c.Call(ctxTimeout(t, 10*time.Second), s.Addr(), kind, req)
				if err != nil {
					errs <- err
					return
				}
				if want := fmt.Sprintf("caller/%d/%s", kind, req); string(got) != want {
					errs <- fmt.Errorf("reply mismatch: got %q, want %q", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if maxInFlight.Load() < 8 {
		t.Fatalf("at most %d handlers ran at once; requests are not multiplexed", maxInFlight.Load())
	}
	// All of this went over one connection.
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("server has %d connections, want 1", n)
	}
}

func TestTCPServerKilledMidFlightThenRedial(t *testing.T) {
	started := make(chan struct{}, 100)
	block := func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	sink := &logSink{}
	s, err := Listen("127.0.0.1:0", HandlerFunc(block), Options{Logf: sink.logf})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	c := newTestClient(t, "c", Options{})

	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := c.Call(ctxTimeout(t, 20*time.Second), addr, 1, []byte("x"))
			errs <- err
		}()
	}
	for range n {
		<-started
	}
	killed := time.Now()
	s.Close()
	for range n {
		err := <-errs
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("in-flight call: got %v, want ErrUnreachable", err)
		}
	}
	if d := time.Since(killed); d > 2*time.Second {
		t.Fatalf("in-flight calls failed only after %v", d)
	}

	// While the server is down calls fail fast with ErrUnreachable.
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call to dead server: got %v, want ErrUnreachable", err)
	}

	// Restart on the same address: the client redials.
	s2, err := Listen(addr, HandlerFunc(echo), Options{Logf: sink.logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := c.Call(ctxTimeout(t, 5*time.Second), addr, 1, []byte("back"))
	if err != nil || string(got) != "back" {
		t.Fatalf("after restart: got %q, %v", got, err)
	}
}

func TestTCPDeadlineAndHandlerContext(t *testing.T) {
	type seen struct {
		deadline time.Time
		has      bool
		err      error
	}
	seenCh := make(chan seen, 1)
	s, _ := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
		seenCh <- seen{d, ok, ctx.Err()}
		return []byte("late"), nil
	}, Options{})
	c := newTestClient(t, "c", Options{})

	start := time.Now()
	callDeadline := start.Add(200 * time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), callDeadline)
	defer cancel()
	_, err := c.Call(ctx, s.Addr(), 1, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("deadline of 200ms took %v", d)
	}
	select {
	case sn := <-seenCh:
		if !sn.has {
			t.Fatal("handler context had no deadline")
		}
		// The server's deadline is computed from the sent remaining time:
		// never earlier than the caller's, and not much later.
		if sn.deadline.Before(callDeadline.Add(-time.Millisecond)) || sn.deadline.After(callDeadline.Add(200*time.Millisecond)) {
			t.Fatalf("handler deadline %v, caller deadline %v", sn.deadline, callDeadline)
		}
		if sn.err == nil {
			t.Fatal("handler context not done")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("handler context was not canceled after the deadline")
	}

	// Cancellation (no deadline reached) travels as a cancel frame.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel2() }()
	_, err = c.Call(ctx2, s.Addr(), 1, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want Canceled", err)
	}
	select {
	case sn := <-seenCh:
		if !errors.Is(sn.err, context.Canceled) {
			t.Fatalf("handler ctx err %v, want Canceled (from the cancel frame)", sn.err)
		}
		// No deadline on ctx2, so the client's CallTimeout was sent.
		if !sn.has || time.Until(sn.deadline) < 20*time.Second {
			t.Fatalf("handler deadline %v (has %v), want about CallTimeout", sn.deadline, sn.has)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("cancel frame did not cancel the handler")
	}
}

func TestTCPCallTimeoutAppliesWithoutDeadline(t *testing.T) {
	s, _ := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, Options{})
	c := newTestClient(t, "c", Options{CallTimeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := c.Call(context.Background(), s.Addr(), 1, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestTCPOversizeFrames(t *testing.T) {
	const small = 1024
	big := bytes.Repeat([]byte("x"), 4096)
	ctx := ctxTimeout(t, 10*time.Second)

	t.Run("client refuses to send", func(t *testing.T) {
		s, _ := startServer(t, echo, Options{})
		c := newTestClient(t, "c", Options{MaxFrameSize: small})
		_, err := c.Call(ctx, s.Addr(), 1, big)
		if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "exceeds max frame size") {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
		if got, err := c.Call(ctx, s.Addr(), 1, []byte("ok")); err != nil || string(got) != "ok" {
			t.Fatalf("after refusal: %q, %v", got, err)
		}
	})

	t.Run("server refuses request", func(t *testing.T) {
		s, sink := startServer(t, echo, Options{MaxFrameSize: small})
		c := newTestClient(t, "c", Options{})
		_, err := c.Call(ctx, s.Addr(), 1, big)
		if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "exceeds server max frame size") {
			t.Fatalf("got %v, want ErrFrameTooLarge from the server", err)
		}
		if !sink.contains("exceeds max frame size") {
			t.Fatalf("server did not log the reason; log:\n%s", sink)
		}
		// The connection was closed; the next call redials.
		if got, err := c.Call(ctx, s.Addr(), 1, []byte("ok")); err != nil || string(got) != "ok" {
			t.Fatalf("after refusal: %q, %v", got, err)
		}
	})

	t.Run("client refuses reply", func(t *testing.T) {
		s, _ := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			return big, nil
		}, Options{})
		sink := &logSink{}
		c := newTestClient(t, "c", Options{MaxFrameSize: small, Logf: sink.logf})
		_, err := c.Call(ctx, s.Addr(), 1, nil)
		if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "exceeds max frame size") {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
		if !sink.contains("exceeds max frame size") {
			t.Fatalf("client did not log the reason; log:\n%s", sink)
		}
	})

	t.Run("server refuses to send reply", func(t *testing.T) {
		s, sink := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			if len(p) > 0 {
				return p, nil
			}
			return big, nil
		}, Options{MaxFrameSize: small})
		c := newTestClient(t, "c", Options{})
		_, err := c.Call(ctx, s.Addr(), 1, nil)
		if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "response of 4096 bytes") {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
		if !sink.contains("refusing to send") {
			t.Fatalf("server did not log; log:\n%s", sink)
		}
		// The connection survives a refused reply.
		if got, err := c.Call(ctx, s.Addr(), 1, []byte("ok")); err != nil || string(got) != "ok" {
			t.Fatalf("after refusal: %q, %v", got, err)
		}
	})
}

func rawFrame(id uint64, typ, kind uint8, timeout uint32, payload []byte) []byte {
	return appendFrame(nil, id, typ, kind, timeout, payload)
}

// Garbage from a raw connection closes that connection with a logged reason
// and never crashes the server.
func TestTCPMalformedInput(t *testing.T) {
	s, sink := startServer(t, echo, Options{DialTimeout: 300 * time.Millisecond, MaxFrameSize: 1 << 20})
	hello := rawFrame(0, frameHello, protocolVersion, 0, []byte("raw"))
	lengthOnly := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	cases := map[string][]byte{
		"no hello":        rawFrame(1, frameRequest, 1, 0, []byte("x")),
		"bad version":     rawFrame(0, frameHello, 99, 0, nil),
		"bad frame type":  append(hello, rawFrame(1, 77, 1, 0, nil)...),
		"response frame":  append(hello, rawFrame(1, frameResponse, 1, 0, nil)...),
		"short length":    append(append(hello, lengthOnly(3)...), make([]byte, 14)...),
		"huge length":     append(append(hello, lengthOnly(0xFFFFFFFF)...), make([]byte, 14)...),
		"cancel w/ body":  append(hello, rawFrame(1, frameCancel, 0, 0, []byte("zz"))...),
		"huge hello":      rawFrame(0, frameHello, protocolVersion, 0, make([]byte, maxHelloPayload+1)),
		"truncated frame": append(hello, rawFrame(1, frameRequest, 1, 0, []byte("abcdef"))[:20]...),
		"silence":         nil,
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		junk := make([]byte, r.IntN(200))
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		if i%2 == 0 {
			junk = append(append([]byte{}, hello...), junk...)
		}
		cases[fmt.Sprintf("junk %d", i)] = junk
	}
	var wg sync.WaitGroup
	for name, b := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			defer conn.Close()
			conn.Write(b)
			if name == "truncated frame" {
				conn.(*net.TCPConn).CloseWrite()
			}
			// The server must close the connection (EOF or reset); it may
			// answer first (the huge-length request gets an error frame).
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			for {
				_, err := conn.Read(buf)
				if err == nil {
					continue
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("%s: server did not close the connection", name)
				}
				return
			}
		}()
	}
	wg.Wait()
	for _, want := range []string{"expected hello", "unexpected unknown(77) frame", "unexpected response frame", "shorter than", "exceeds max frame size", "cancel frame with 2 payload bytes"} {
		if !sink.contains(want) {
			t.Errorf("log lacks %q; log:\n%s", want, sink)
		}
	}
	// The server still serves well-behaved clients.
	c := newTestClient(t, "c", Options{})
	if got, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 1, []byte("fine")); err != nil || string(got) != "fine" {
		t.Fatalf("after garbage: %q, %v", got, err)
	}
}

func TestTCPRemoteError(t *testing.T) {
	s, sink := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		switch string(p) {
		case "panic":
			panic("kaboom")
		case "err":
			return []byte("ignored"), fmt.Errorf("replica: key %q not found", "k1")
		}
		return p, nil
	}, Options{})
	c := newTestClient(t, "c", Options{})
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := c.Call(ctx, s.Addr(), 42, []byte("err"))
	var re *RemoteError
	if !errors.As(err, &re) || !errors.Is(err, ErrRemote) {
		t.Fatalf("got %v (%T), want *RemoteError", err, err)
	}
	if re.Message != `replica: key "k1" not found` || re.Kind != 42 || re.Addr != s.Addr() {
		t.Fatalf("RemoteError = %+v", re)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Fatal("a remote error must not look like an unreachable peer")
	}
	_, err = c.Call(ctx, s.Addr(), 1, []byte("panic"))
	if !errors.As(err, &re) || !strings.Contains(re.Message, "kaboom") {
		t.Fatalf("panicking handler: got %v", err)
	}
	if !sink.contains("panicked") {
		t.Fatal("panic not logged")
	}
	// The connection is still good.
	if got, err := c.Call(ctx, s.Addr(), 1, []byte("ok")); err != nil || string(got) != "ok" {
		t.Fatalf("after errors: %q, %v", got, err)
	}
}

func TestTCPCloseWaitsForHandlers(t *testing.T) {
	started := make(chan struct{})
	var finished atomic.Bool
	s, err := Listen("127.0.0.1:0", HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		close(started)
		time.Sleep(300 * time.Millisecond) // ignores ctx on purpose
		finished.Store(true)
		return nil, nil
	}), Options{Logf: (&logSink{}).logf})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, "c", Options{})
	callErr := make(chan error, 1)
	go func() {
		_, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 1, nil)
		callErr <- err
	}()
	<-started
	s.Close()
	if !finished.Load() {
		t.Fatal("Close returned before the handler finished")
	}
	if err := <-callErr; !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call during Close: got %v, want ErrUnreachable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTCPUnreachableAndClosed(t *testing.T) {
	// A port nobody listens on: grab one and release it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newTestClient(t, "c", Options{})
	start := time.Now()
	_, err = c.Call(ctxTimeout(t, 5*time.Second), addr, 1, nil)
	if !errors.Is(err, ErrUnreachable) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v, want prompt ErrUnreachable", err, time.Since(start))
	}

	s, _ := startServer(t, echo, Options{})
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 1, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: got %v, want ErrClosed", err)
	}
}

func TestTCPIdleConnectionsClosed(t *testing.T) {
	s, _ := startServer(t, echo, Options{})
	c := newTestClient(t, "c", Options{IdleTimeout: 30 * time.Millisecond})
	ctx := ctxTimeout(t, 5*time.Second)
	if _, err := c.Call(ctx, s.Addr(), 1, nil); err != nil {
		t.Fatal(err)
	}
	serverConns := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns)
	}
	deadline := time.Now().Add(3 * time.Second)
	for serverConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection was not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := c.Call(ctx, s.Addr(), 1, []byte("again")); err != nil || string(got) != "again" {
		t.Fatalf("after idle close: %q, %v", got, err)
	}
	// Busy connections are not closed as idle.
	for range 20 {
		if _, err := c.Call(ctx, s.Addr(), 1, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Many goroutines each with a very short deadline against a slow handler:
// races between replies, deadlines and cancel frames must not leak or
// confuse calls.
func TestTCPDeadlineRaces(t *testing.T) {
	s, _ := startServer(t, func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		return p, nil
	}, Options{})
	c := newTestClient(t, "c", Options{})
	var wg sync.WaitGroup
	var ok, timedOut atomic.Int64
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(3000))*time.Microsecond)
				req := []byte(fmt.Sprintf("%d-%d", g, i))
				got, err := c.Call(ctx, s.Addr(), 1, req)
				cancel()
				switch {
				case err == nil:
					if !bytes.Equal(got, req) {
						t.Errorf("got %q want %q", got, req)
					}
					ok.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					timedOut.Add(1)
				default:
					t.Errorf("unexpected error %v", err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d ok, %d timed out", ok.Load(), timedOut.Load())
	if got, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 1, []byte("z")); err != nil || string(got) != "z" {
		t.Fatalf("after races: %q, %v", got, err)
	}
}

// BenchmarkTCPCallParallel measures small round trips over loopback with
// 8 callers per GOMAXPROCS (16 on a 2-core machine) sharing one client.
func BenchmarkTCPCallParallel(b *testing.B) {
	s, err := Listen("127.0.0.1:0", HandlerFunc(echo), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := NewClient("bench", Options{})
	defer c.Close()
	payload := make([]byte, 32)
	if _, err := c.Call(context.Background(), s.Addr(), 1, payload); err != nil {
		b.Fatal(err)
	}
	addr := s.Addr()
	writes0, frames0 := writeCalls.Load(), framesWritten.Load()
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for pb.Next() {
			if _, err := c.Call(ctx, addr, 1, payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	if w := writeCalls.Load() - writes0; w > 0 {
		b.ReportMetric(float64(framesWritten.Load()-frames0)/float64(w), "frames/write")
	}
}

// After Close on both sides no goroutine of the package may remain.
func TestTCPNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	sink := &logSink{}
	s, err := Listen("127.0.0.1:0", HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		if string(p) == "block" {
			<-ctx.Done()
		}
		return p, nil
	}), Options{Logf: sink.logf})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient("c", Options{Logf: sink.logf})
	ctx := ctxTimeout(t, 5*time.Second)
	for range 100 {
		if _, err := c.Call(ctx, s.Addr(), 1, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// Leave a call in flight and a raw connection that never says hello.
	go c.Call(ctx, s.Addr(), 1, []byte("block"))
	raw, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	s.Close()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkTCPCallSerial measures the latency of one caller's round trips
// (no batching possible).
func BenchmarkTCPCallSerial(b *testing.B) {
	s, err := Listen("127.0.0.1:0", HandlerFunc(echo), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := NewClient("bench", Options{})
	defer c.Close()
	addr := s.Addr()
	payload := make([]byte, 32)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Call(ctx, addr, 1, payload); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Call(ctx, addr, 1, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
