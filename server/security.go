package server

import (
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/ringkv/ringkv/auth"
)

// security is what the node checks of its clients: users (nil: anyone)
// and the TLS configuration of the client ports (nil: plaintext).
type security struct {
	users     *auth.Users
	clientTLS *tls.Config
}

// loadSecurity reads the auth file and the client certificate, and
// refuses to listen beyond this host without authentication unless the
// operator said --insecure.
func loadSecurity(cfg Config, peerBind string) (security, error) {
	var sec security
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
	if cfg.Insecure {
		return sec, nil
	}
	check := func(flag, addr string, secured bool, how string) error {
		if addr == "" || secured || isLoopback(addr) {
			return nil
		}
		return fmt.Errorf("%s %s listens beyond this host without %s: give %s, or start with --insecure to accept that", flag, addr, how, strings.ReplaceAll(how, "authentication", "--auth-file (users: `ringkv user add`)"))
	}
	if err := check("--resp-addr", cfg.RespAddr, sec.users != nil, "authentication"); err != nil {
		return sec, err
	}
	if err := check("--http-addr", cfg.HTTPAddr, sec.users != nil, "authentication"); err != nil {
		return sec, err
	}
	return sec, check("--peer-addr (bind)", peerBind, false, "authentication of the peers")
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
