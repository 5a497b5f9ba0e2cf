package resp

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// The zero Options bound what a client can make the server hold.
func TestLimitDefaults(t *testing.T) {
	s := NewServer(NewMapBackend(), Options{})
	o := s.opt
	if o.ReadTimeout != DefaultReadTimeout || o.WriteTimeout != DefaultWriteTimeout ||
		o.MaxConnections != DefaultMaxConnections || o.MaxOutputBuffer != DefaultMaxOutputBuffer || o.IdleTimeout != 0 {
		t.Fatalf("defaults: %+v", o)
	}
	s = NewServer(NewMapBackend(), Options{ReadTimeout: -1, WriteTimeout: -1, MaxConnections: -1})
	if s.opt.ReadTimeout != 0 || s.opt.WriteTimeout != 0 || s.opt.MaxConnections != -1 {
		t.Fatalf("negative (none): %+v", s.opt)
	}
}

// Over MaxConnections a client gets Redis' error and the connection is
// closed; the connections already open keep being served, and once one
// closes a new client gets in.
func TestMaxConnections(t *testing.T) {
	s, addr := startServer(t, nil, Options{MaxConnections: 3})
	var open []*rawConn
	for range 3 {
		r := dialRaw(t, addr)
		r.send(cmd("PING"))
		if got := r.reply(); got != "+PONG\r\n" {
			t.Fatal(got)
		}
		open = append(open, r)
	}
	over := dialRaw(t, addr)
	over.send(cmd("PING")) // unread input must not destroy the error
	if got := over.reply(); got != "-ERR max number of clients reached\r\n" {
		t.Fatalf("over the limit: %q", got)
	}
	over.expectClosed()
	if n := s.Stats().RejectedConnections; n != 1 {
		t.Fatalf("RejectedConnections = %d", n)
	}
	for _, r := range open {
		r.send(cmd("PING"))
		if got := r.reply(); got != "+PONG\r\n" {
			t.Fatalf("open client after the rejection: %q", got)
		}
	}
	open[0].nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().ConnectedClients > 2 {
		if time.Now().After(deadline) {
			t.Fatal("closed client still counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := dialRaw(t, addr)
	r.send(cmd("PING"))
	if got := r.reply(); got != "+PONG\r\n" {
		t.Fatalf("after a client left: %q", got)
	}
}

// A client that keeps trickling the bytes of one command (a slowloris) is
// closed ReadTimeout after the server started waiting for the rest of it:
// every byte it sends must not extend the deadline.
func TestReadTimeoutTrickle(t *testing.T) {
	s, addr := startServer(t, nil, Options{ReadTimeout: 300 * time.Millisecond})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := cmd("SET", "k", strings.Repeat("v", 200))
	start := time.Now()
	closedAfter := time.Duration(0)
	for i := 0; i < len(msg) && time.Since(start) < 5*time.Second; i++ {
		nc.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := nc.Write([]byte{msg[i]}); err != nil {
			closedAfter = time.Since(start)
			break
		}
		if s.Stats().TimedOut > 0 {
			closedAfter = time.Since(start)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if closedAfter == 0 {
		t.Fatalf("a client trickling a command was not closed within %v", time.Since(start))
	}
	if closedAfter > 2*time.Second {
		t.Fatalf("closed after %v, want about the 300ms ReadTimeout", closedAfter)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = nc.Read(make([]byte, 16))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open: %v", err)
	}
}

// A whole command that arrives slowly in pieces, each within ReadTimeout
// of the previous, but the whole within ReadTimeout, is served; so are
// commands after a long idle spell (IdleTimeout 0).
func TestReadTimeoutAllowsSlowButTimelyCommand(t *testing.T) {
	_, addr := startServer(t, nil, Options{ReadTimeout: time.Second})
	r := dialRaw(t, addr)
	msg := cmd("SET", "k", "v")
	r.send(msg[:5])
	time.Sleep(200 * time.Millisecond)
	r.send(msg[5:12])
	time.Sleep(200 * time.Millisecond)
	r.send(msg[12:])
	if got := r.reply(); got != "+OK\r\n" {
		t.Fatal(got)
	}
	time.Sleep(1200 * time.Millisecond) // idle longer than ReadTimeout
	r.send(cmd("GET", "k"))
	if got := r.reply(); got != "$1\r\nv\r\n" {
		t.Fatal(got)
	}
}

// The read buffer starts small and grows for a long inline command (up to
// the 64 KiB inline limit) and the reply buffer for a pipeline.
func TestBuffersGrow(t *testing.T) {
	_, addr := startServer(t, nil, Options{})
	r := dialRaw(t, addr)
	long := strings.Repeat("x", 60000)
	r.send("ECHO " + long + "\r\n")
	if got := r.reply(); got != bulk(long) {
		t.Fatalf("long inline ECHO: %d bytes", len(got))
	}
	var w strings.Builder
	for range 2000 {
		w.WriteString(cmd("PING"))
	}
	r.send(w.String())
	for i := range 2000 {
		if got := r.reply(); got != "+PONG\r\n" {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
	r.send("ECHO " + strings.Repeat("x", readBufSize) + "\r\n")
	if got := r.reply(); !strings.HasPrefix(got, "-ERR Protocol error: too big inline request") {
		t.Fatalf("inline request over the limit: %q", got)
	}
}
