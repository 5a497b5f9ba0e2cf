package membership

import (
	"bytes"
	"testing"
	"time"
)

// With a cluster secret, nodes with the key gossip; a node with another
// key or none cannot join, and the members never list it.
func TestGossipNeedsTheClusterSecret(t *testing.T) {
	h := newHarness(t)
	key := bytes.Repeat([]byte{7}, 32)
	c0 := h.config("n0")
	c0.SecretKey = key
	m0 := h.start(c0)
	c1 := h.config("n1", m0.LocalNode().GossipAddr)
	c1.SecretKey = key
	m1 := h.start(c1)
	waitFor(t, 10*time.Second, "two keyed nodes converge", func() bool {
		return converged([]*Membership{m0, m1}, "n0", "n1")
	})
	for _, c := range []struct {
		id  string
		key []byte
	}{{"wrongkey", bytes.Repeat([]byte{8}, 32)}, {"nokey", nil}} {
		cfg := h.config(c.id, m0.LocalNode().GossipAddr)
		cfg.SecretKey = c.key
		cfg.JoinTimeout = time.Second
		if m, err := Start(cfg); err == nil {
			t.Cleanup(func() { m.Close() })
		}
	}
	time.Sleep(2 * time.Second)
	for _, m := range []*Membership{m0, m1} {
		for _, st := range m.Members() {
			if st.ID != "n0" && st.ID != "n1" {
				t.Fatalf("%s lists %s, which does not have the cluster's key", m.LocalNode().ID, st.ID)
			}
		}
	}
	bad := h.config("short")
	bad.SecretKey = []byte("short")
	if m, err := Start(bad); err == nil {
		m.Close()
		t.Fatalf("a 5-byte key was accepted")
	}
}
