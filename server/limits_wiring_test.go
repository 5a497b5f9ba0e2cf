package server

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// The node's client limits reach its Redis server: over --max-clients a
// connection is told so and closed.
func TestMaxClientsReachesTheRedisPort(t *testing.T) {
	s, err := Start(Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
		RespAddr: "127.0.0.1:0", Replicas: 1, MaxClients: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	ping := func(c net.Conn) string {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("PING\r\n"))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", s.RespAddr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		got := ping(c)
		switch {
		case i < 2 && got != "+PONG":
			t.Fatalf("connection %d: %q, want +PONG", i+1, got)
		case i == 2 && !strings.Contains(got, "max number of clients"):
			t.Fatalf("connection 3 over --max-clients 2: %q, want the max clients error", got)
		}
	}
}
