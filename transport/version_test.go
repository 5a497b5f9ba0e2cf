package transport

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A peer of another protocol version is told why it is refused, and a
// client refused so reports the server's reason.
func TestPeerOfAnotherProtocolVersionIsToldWhy(t *testing.T) {
	s, _ := startServer(t, echo, Options{DialTimeout: time.Second})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(rawFrame(0, frameHello, protocolVersion+1, 0, []byte("future:7000")))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	h, err := readHeader(br, make([]byte, headerLen))
	if err != nil {
		t.Fatalf("no answer to a hello of another version: %v", err)
	}
	payload, err := readPayload(br, h.payloadLen())
	if err != nil || h.typ != frameError || h.kind != errCodeProtocol || !strings.Contains(string(payload), "protocol version") {
		t.Fatalf("answer %s frame kind %d %q %v, want a protocol error naming the versions", frameTypeName(h.typ), h.kind, payload, err)
	}

	// The client side: a server that answers every hello with that error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := readHeader(br, make([]byte, headerLen)); err != nil {
					return
				}
				c.Write(rawFrame(0, frameError, errCodeProtocol, 0, []byte("peer protocol version 1 is not supported: this node speaks version 2")))
				time.Sleep(100 * time.Millisecond)
			}()
		}
	}()
	cl := NewClient("me:1", Options{})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cl.Call(ctx, ln.Addr().String(), 1, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "speaks version 2") {
		t.Fatalf("call to a server of another version: %v, want its reason", err)
	}
}
