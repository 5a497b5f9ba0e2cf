package server

import (
	"net"
	"strings"
	"testing"
)

// A node that cannot start says why and releases what it opened (the data
// directory can be used again at once).
func TestStartFailureIsAnErrorNotAPanic(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := peer.Addr().String()
	peer.Close()
	dir := t.TempDir()
	cfg := Config{NodeID: "n1", DataDir: dir, PeerAddr: peerAddr, RespAddr: busy.Addr().String(), Replicas: 1}
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "resp listener") {
		t.Fatalf("start with a busy RESP port: %v", err)
	}
	cfg.RespAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("start after a failed start on the same data directory: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGossipAddr(t *testing.T) {
	if g, err := GossipAddr("127.0.0.1:7000"); err != nil || g != "127.0.0.1:7001" {
		t.Fatalf("GossipAddr: %q %v", g, err)
	}
	for _, bad := range []string{"nope", "127.0.0.1:x", "127.0.0.1:65535"} {
		if _, err := GossipAddr(bad); err == nil {
			t.Errorf("GossipAddr(%q) accepted", bad)
		}
	}
}
