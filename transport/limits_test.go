package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// dialHello opens a raw connection to s and sends a hello frame.
func dialHello(t *testing.T, s *Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write(rawFrame(0, frameHello, protocolVersion, 0, []byte("raw"))); err != nil {
		t.Fatal(err)
	}
	return conn
}

// closedWithin reports whether the server closes conn within d (reading and
// dropping whatever it sends first).
func closedWithin(conn net.Conn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// A peer that declares a large frame and sends a little of it makes the
// receiver allocate about what it sent, not what it declared.
func TestReadPayloadAllocatesWhatArrives(t *testing.T) {
	const declared = 16 << 20
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(make([]byte, 1000)), iotestErrReader{}), 64<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := readPayload(br, declared)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncated payload was accepted")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("allocated %d bytes for a payload that declared %d and sent 1000", got, declared)
	}
	// A payload that does arrive in full is returned whole.
	want := bytes.Repeat([]byte("0123456789"), 100_000)
	got, err := readPayload(bufio.NewReader(bytes.NewReader(want)), len(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("full payload: %d bytes, %v", len(got), err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// A peer trickling a request frame (one byte at a time, each in time for a
// per-read deadline) is closed FrameTimeout after the server started
// waiting for the rest of the frame.
func TestFrameTimeoutTrickle(t *testing.T) {
	s, sink := startServer(t, echo, Options{FrameTimeout: 300 * time.Millisecond})
	conn := dialHello(t, s)
	frame := rawFrame(1, frameRequest, 1, 0, bytes.Repeat([]byte("x"), 100))
	start := time.Now()
	for i := 0; i < len(frame) && time.Since(start) < 5*time.Second; i++ {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write(frame[i : i+1]); err != nil {
			break
		}
		if s.Stats().TimedOut > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !closedWithin(conn, 3*time.Second) {
		t.Fatal("a peer trickling a frame was not closed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v, want about the 300ms FrameTimeout", d)
	}
	if s.Stats().TimedOut != 1 {
		t.Fatalf("TimedOut = %d; log:\n%s", s.Stats().TimedOut, sink)
	}
}

// A connection that sends nothing is closed after ServerIdleTimeout, but
// not while a handler runs for it (its client waits for the reply).
func TestServerIdleTimeout(t *testing.T) {
	slow := func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
		if kind == 2 {
			time.Sleep(700 * time.Millisecond)
		}
		return payload, nil
	}
	s, sink := startServer(t, slow, Options{ServerIdleTimeout: 200 * time.Millisecond})
	conn := dialHello(t, s)
	start := time.Now()
	if !closedWithin(conn, 3*time.Second) {
		t.Fatal("an idle connection was not closed")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("closed after only %v", d)
	}
	if !sink.contains("ServerIdleTimeout") {
		t.Fatalf("log:\n%s", sink)
	}
	c := newTestClient(t, "c", Options{IdleTimeout: -1})
	got, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 2, []byte("slow"))
	if err != nil || string(got) != "slow" {
		t.Fatalf("call whose handler outlasts the idle timeout: %q, %v", got, err)
	}
}

// Over MaxConnections a connection is closed at once; the others keep
// being served.
func TestServerMaxConnections(t *testing.T) {
	s, sink := startServer(t, echo, Options{MaxConnections: 2})
	c := newTestClient(t, "c", Options{})
	if _, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	dialHello(t, s)
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Connections < 2 {
		if time.Now().After(deadline) {
			t.Fatal("second connection not registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	over := dialHello(t, s)
	if !closedWithin(over, 3*time.Second) {
		t.Fatal("connection over MaxConnections not closed")
	}
	if s.Stats().Rejected != 1 || !sink.contains("MaxConnections") {
		t.Fatalf("stats %+v; log:\n%s", s.Stats(), sink)
	}
	if got, err := c.Call(ctxTimeout(t, 5*time.Second), s.Addr(), 1, []byte("b")); err != nil || string(got) != "b" {
		t.Fatalf("open connection after the refusal: %q, %v", got, err)
	}
}

// A request that declares the largest frame and then stops sending holds
// the connection's goroutine only until FrameTimeout.
func TestFrameTimeoutDeclaredLargeFrame(t *testing.T) {
	s, _ := startServer(t, echo, Options{FrameTimeout: 300 * time.Millisecond})
	conn := dialHello(t, s)
	var h [headerLen]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(defaultMaxFrameSize))
	h[12] = frameRequest
	conn.Write(h[:])
	conn.Write(make([]byte, 1000))
	if !closedWithin(conn, 3*time.Second) {
		t.Fatal("a stalled large frame was not closed")
	}
}
