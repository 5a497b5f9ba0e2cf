package transport

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

func userTimeoutOf(t *testing.T, conn net.Conn) int {
	t.Helper()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// Both ends of a peer connection abort it once sent bytes stay
// unacknowledged for UnackedTimeout, so a silent cut breaks it.
func TestConnectionsAbortOnUnacknowledgedData(t *testing.T) {
	o := Options{UnackedTimeout: 1234 * time.Millisecond}
	accepted := make(chan net.Conn, 1)
	srv, err := Listen("127.0.0.1:0", HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
		return p, nil
	}), o)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := NewClient("test", o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, srv.Addr(), 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	var dialed net.Conn
	for _, s := range c.slots {
		if s.cc != nil {
			dialed = s.cc.conn
		}
	}
	c.mu.Unlock()
	if dialed == nil {
		t.Fatal("no connection")
	}
	if got := userTimeoutOf(t, dialed); got != 1234 {
		t.Fatalf("client side TCP_USER_TIMEOUT %d ms, want 1234", got)
	}
	srv.mu.Lock()
	for sc := range srv.conns {
		accepted <- sc.conn
		break
	}
	srv.mu.Unlock()
	select {
	case conn := <-accepted:
		if got := userTimeoutOf(t, conn); got != 1234 {
			t.Fatalf("server side TCP_USER_TIMEOUT %d ms, want 1234", got)
		}
	default:
		t.Fatal("the server has no connection")
	}
}
