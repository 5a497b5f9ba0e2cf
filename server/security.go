package server

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/ringkv/ringkv/auth"
)

// security is what the node checks of its clients: users (nil: anyone)
// and the TLS configuration of the client ports (nil: plaintext).
type security struct {
	users     *auth.Users
	clientTLS *tls.Config
	gossipKey []byte
	// peerServer and peerClient are the peer port's mutual TLS (nil:
	// plaintext).
	peerServer, peerClient *tls.Config
	// uiClient asks the other members for the dashboard: it trusts the
	// system's roots, the cluster CA and the CAs in the --tls-cert chain.
	uiClient *http.Client
}

// loadPeerTLS builds the peer port's mutual TLS: both ends present a
// certificate the cluster CA signed; the client checks the chain, not the
// host name (peers are dialed by address, and the name a node advertises
// may be an IP or a container's name), and the server hands the client's
// common name to the handlers as its identity.
func loadPeerTLS(cfg Config) (server, client *tls.Config, err error) {
	set := 0
	for _, f := range []string{cfg.PeerTLSCA, cfg.PeerTLSCert, cfg.PeerTLSKey} {
		if f != "" {
			set++
		}
	}
	switch set {
	case 0:
		return nil, nil, nil
	case 3:
	default:
		return nil, nil, fmt.Errorf("--peer-tls-ca, --peer-tls-cert and --peer-tls-key go together")
	}
	pem, err := os.ReadFile(cfg.PeerTLSCA)
	if err != nil {
		return nil, nil, fmt.Errorf("--peer-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("--peer-tls-ca %s: no PEM certificate in it", cfg.PeerTLSCA)
	}
	cert, err := tls.LoadX509KeyPair(cfg.PeerTLSCert, cfg.PeerTLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("--peer-tls-cert/--peer-tls-key: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("--peer-tls-cert: %w", err)
		}
	}
	if leaf.Subject.CommonName != cfg.NodeID {
		return nil, nil, fmt.Errorf("--peer-tls-cert %s: common name %q, want this node's ID %q (a node's peer certificate names it)", cfg.PeerTLSCert, leaf.Subject.CommonName, cfg.NodeID)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, nil, fmt.Errorf("--peer-tls-cert %s is not signed by --peer-tls-ca %s for client and server use: %w", cfg.PeerTLSCert, cfg.PeerTLSCA, err)
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates:       []tls.Certificate{cert},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // the chain is checked below, the host name is not
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("peer certificate not signed by the cluster CA: %w", err)
			}
			return nil
		},
	}
	return server, client, nil
}

// readGossipKey reads a gossip key file: base64 of 16, 24 or 32 bytes.
func readGossipKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("--gossip-key-file %s: not base64: %w", path, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("--gossip-key-file %s: %d bytes, want 16, 24 or 32 (make one with `ringkv gossip-key`)", path, n)
	}
	return key, nil
}

// loadSecurity reads the auth file and the client certificate, and
// refuses to listen beyond this host without authentication unless the
// operator said --insecure.
func loadSecurity(cfg Config, peerBind string) (security, error) {
	var sec security
	var err error
	if cfg.AuthFile != "" {
		users, err := auth.Load(cfg.AuthFile)
		if err != nil {
			return sec, err
		}
		sec.users = users
	}
	switch {
	case cfg.TLSCert != "" && cfg.TLSKey != "":
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return sec, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		sec.clientTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		return sec, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if sec.peerServer, sec.peerClient, err = loadPeerTLS(cfg); err != nil {
		return sec, err
	}
	if sec.clientTLS != nil {
		sec.uiClient = dashboardClient(cfg, sec.clientTLS)
	}
	if cfg.GossipKeyFile != "" {
		key, err := readGossipKey(cfg.GossipKeyFile)
		if err != nil {
			return sec, err
		}
		sec.gossipKey = key
	}
	if cfg.Insecure {
		return sec, nil
	}
	check := func(flag, addr string, secured bool, what, give string) error {
		if addr == "" || secured || isLoopback(addr) {
			return nil
		}
		return fmt.Errorf("%s %s listens beyond this host without %s: give %s, or start with --insecure to accept that", flag, addr, what, give)
	}
	const clients = "--auth-file (users: `ringkv user add`)"
	if err := check("--resp-addr", cfg.RespAddr, sec.users != nil, "client authentication", clients); err != nil {
		return sec, err
	}
	if err := check("--http-addr", cfg.HTTPAddr, sec.users != nil, "client authentication", clients); err != nil {
		return sec, err
	}
	peersSecured := sec.peerServer != nil && sec.gossipKey != nil
	return sec, check("--peer-addr (bind)", peerBind, peersSecured, "authentication of the peers",
		"--peer-tls-ca, --peer-tls-cert, --peer-tls-key and --gossip-key-file")
}

// dashboardClient is the client the dashboard asks the other members'
// HTTPS ports with.
func dashboardClient(cfg Config, clientTLS *tls.Config) *http.Client {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if cfg.PeerTLSCA != "" {
		if pem, err := os.ReadFile(cfg.PeerTLSCA); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
	}
	for _, c := range clientTLS.Certificates {
		for _, der := range c.Certificate[1:] {
			if ca, err := x509.ParseCertificate(der); err == nil {
				pool.AddCert(ca)
			}
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// isLoopback reports whether a listen address stays on this host.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authenticateRESP is resp.Options.Authenticate.
func (sec security) authenticateRESP(user, pass string) bool {
	return sec.users.CheckPassword(user, pass) == nil
}

// openPaths answer without credentials: a load balancer's health check.
var openPaths = map[string]bool{"/healthz": true}

// requireAuth wraps h so that every request but the open paths (and
// /metrics and /debug/pprof/ when openMetrics) carries a user's
// credentials: HTTP basic authentication with a password, or a bearer
// token.
func (sec security) requireAuth(h http.Handler, openMetrics bool) http.Handler {
	if sec.users == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if openPaths[p] || openMetrics && (p == "/metrics" || strings.HasPrefix(p, "/debug/pprof/")) {
			h.ServeHTTP(w, r)
			return
		}
		if sec.httpUser(r) == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="ringkv", charset="UTF-8"`)
			http.Error(w, "authentication required: HTTP basic auth with a user's password, or Authorization: Bearer TOKEN", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// httpUser returns the user r authenticates as, or "".
func (sec security) httpUser(r *http.Request) string {
	if user, pass, ok := r.BasicAuth(); ok {
		if sec.users.CheckPassword(user, pass) == nil {
			return user
		}
		return ""
	}
	const bearer = "Bearer "
	if a := r.Header.Get("Authorization"); len(a) > len(bearer) && subtle.ConstantTimeCompare([]byte(strings.ToLower(a[:len(bearer)])), []byte("bearer ")) == 1 {
		if user, err := sec.users.CheckToken(strings.TrimSpace(a[len(bearer):])); err == nil {
			return user
		}
	}
	return ""
}
