package resp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// slowGets answers GET after a pause.
type slowGets struct {
	*MapBackend
	pause time.Duration
}

func (b slowGets) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	time.Sleep(b.pause)
	return b.MapBackend.Get(ctx, key)
}

// Shutdown lets the commands already received finish and answers them,
// closes idle connections, and refuses new ones.
func TestShutdownDrainsCommandsInFlight(t *testing.T) {
	mb := NewMapBackend()
	mb.Set(context.Background(), []byte("k"), []byte("v"))
	s, addr := startServer(t, slowGets{mb, 300 * time.Millisecond}, Options{})
	busy := dialRaw(t, addr)
	idle := dialRaw(t, addr)
	idle.send(cmd("PING"))
	if got := idle.reply(); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	busy.send(cmd("GET", "k") + cmd("GET", "k"))
	time.Sleep(50 * time.Millisecond) // both received, the first running
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	for i := range 2 {
		if got := busy.reply(); got != "$1\r\nv\r\n" {
			t.Fatalf("GET %d in flight at shutdown: %q, want its answer", i+1, got)
		}
	}
	busy.expectClosed()
	idle.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, rerr := c.Read(make([]byte, 1))
		c.Close()
		if rerr == nil || errors.Is(rerr, context.DeadlineExceeded) {
			t.Fatalf("a new connection after Shutdown was served")
		}
	}
}
