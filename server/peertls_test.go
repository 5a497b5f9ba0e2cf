package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/internal/testcerts"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/transport"
)

// A cluster with mutual TLS on the peer port and a gossip key replicates
// as usual (writes at W=ALL); a peer without a certificate, or with one
// from another CA, is refused at the handshake before any message
// reaches a handler; a node whose certificate names another node does not
// start.
func TestPeersNeedTheClusterCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, err := testcerts.NewCA(dir, "rogue")
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := func(id string, join ...string) Config {
		cert, keyPEM, err := ca.Issue(id, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return Config{NodeID: id, DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
			RespAddr: "127.0.0.1:0", Replicas: 3, Partitions: 64, Join: join,
			PeerTLSCA: ca.CertFile, PeerTLSCert: cert, PeerTLSKey: keyPEM, GossipKeyFile: keyFile}
	}
	start := func(cfg Config) *Server {
		s, err := Start(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", cfg.NodeID, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := start(config("a"))
	b := start(config("b", a.cfg.PeerAddr))
	start(config("c", a.cfg.PeerAddr))
	waitFor(t, "three normal members alive on a", func() bool {
		n := 0
		for _, m := range a.Membership().Members() {
			if m.Alive && m.State == ring.StateNormal {
				n++
			}
		}
		return n == 3
	})
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: a.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	if err := rc.Do(ctx, "RINGKV.CONFIG", "SET", "w", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := rc.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatalf("SET k%d at W=ALL over mutual TLS: %v", i, err)
		}
	}

	// Rogue peers: no certificate, then a certificate of another CA that
	// even claims to be node b.
	rogueCert, rogueKey, err := rogueCA.Issue("b", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(rogueCert, rogueKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"plaintext", nil},
		{"TLS without a certificate", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}},
		{"a certificate of another CA", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
			// Presented whatever CAs the server names.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }}},
	} {
		cl := transport.NewClient("127.0.0.1:1", transport.Options{ClientTLS: c.cfg, DialTimeout: 2 * time.Second, Logf: func(string, ...any) {}})
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cl.Call(cctx, b.cfg.PeerAddr, 1, []byte("forged"))
		cancel()
		cl.Close()
		if err == nil || errors.Is(err, transport.ErrRemote) {
			t.Fatalf("rogue peer (%s): %v, want the connection refused before any handler ran", c.name, err)
		}
		t.Logf("rogue peer (%s): %v", c.name, err)
	}

	// A node whose certificate names another node does not start.
	bad := config("d", a.cfg.PeerAddr)
	bad.PeerTLSCert, bad.PeerTLSKey, _ = ca.Issue("e", "127.0.0.1")
	if s, err := Start(bad); err == nil {
		s.Close()
		t.Fatalf("a node started with another node's certificate")
	} else if !strings.Contains(err.Error(), "common name") {
		t.Fatalf("start with another node's certificate: %v", err)
	}
}
