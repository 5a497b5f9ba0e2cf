package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/auth"
	"github.com/ringkv/ringkv/internal/testcerts"
)

// securedNode starts a single node with users alice (a password) and a
// token, TLS on its client ports, and returns it with the CA, the token
// and the users file.
func securedNode(t *testing.T, openMetrics bool) (s *Server, ca *testcerts.CA, token string) {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	h, err := auth.HashPassword("alice-secret")
	if err != nil {
		t.Fatal(err)
	}
	token, th, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.Update(users, auth.SetPassword("alice", h)); err != nil {
		t.Fatal(err)
	}
	if err := auth.Update(users, auth.AddToken("bot", th)); err != nil {
		t.Fatal(err)
	}
	ca, err = testcerts.NewCA(dir, "clients")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s, err = Start(Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
		RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Replicas: 1,
		AuthFile: users, OpenMetrics: openMetrics, TLSCert: cert, TLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ca, token
}

// TLS on the Redis port; AUTH with a user's password; plaintext refused.
func TestRedisOverTLSWithAuth(t *testing.T) {
	s, ca, _ := securedNode(t, false)
	ctx := context.Background()
	tlsCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	newClient := func(mod func(*redis.Options)) *redis.Client {
		o := &redis.Options{Addr: s.RespAddr(), MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second}
		mod(o)
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		return c
	}
	anon := newClient(func(o *redis.Options) { o.TLSConfig = tlsCfg })
	if err := anon.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("SET over TLS without AUTH: %v, want NOAUTH", err)
	}
	wrong := newClient(func(o *redis.Options) { o.TLSConfig, o.Username, o.Password = tlsCfg, "alice", "nope-nope" })
	if err := wrong.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v, want WRONGPASS", err)
	}
	alice := newClient(func(o *redis.Options) { o.TLSConfig, o.Username, o.Password = tlsCfg, "alice", "alice-secret" })
	if err := alice.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET as alice over TLS: %v", err)
	}
	if v, err := alice.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET as alice: %q %v", v, err)
	}
	plain := newClient(func(o *redis.Options) { o.Username, o.Password = "alice", "alice-secret" })
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatalf("a plaintext client was served on the TLS port")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Logf("redis-cli not installed: the redis-cli --tls check is skipped")
		return
	}
	host, port, _ := strings.Cut(s.RespAddr(), ":")
	out, err := exec.Command(cli, "--tls", "--cacert", ca.CertFile, "-h", host, "-p", port, "--user", "alice", "--pass", "alice-secret", "--no-auth-warning", "GET", "k").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "v" {
		t.Fatalf("redis-cli --tls GET k: %v: %q", err, out)
	}
	out, _ = exec.Command(cli, "-h", host, "-p", port, "--user", "alice", "--pass", "alice-secret", "--no-auth-warning", "GET", "k").CombinedOutput()
	if strings.TrimSpace(string(out)) == "v" {
		t.Fatalf("redis-cli without --tls read the key")
	}
	t.Logf("redis-cli --tls --cacert: GET k = v; without --tls: %q", strings.TrimSpace(string(out)))
}

// HTTPS with basic auth or a bearer token; /healthz open; /metrics behind
// authentication unless --open-metrics.
func TestHTTPSWithBasicAuthAndTokens(t *testing.T) {
	for _, openMetrics := range []bool{false, true} {
		t.Run(fmt.Sprintf("open-metrics=%v", openMetrics), func(t *testing.T) {
			s, ca, token := securedNode(t, openMetrics)
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
			base := "https://" + s.HTTPAddr()
			call := func(method, path, body string, set func(*http.Request)) (int, string) {
				req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
				if set != nil {
					set(req)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			basic := func(user, pass string) func(*http.Request) {
				return func(r *http.Request) { r.SetBasicAuth(user, pass) }
			}
			bearer := func(tok string) func(*http.Request) {
				return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
			}
			if code, _ := call("GET", "/healthz", "", nil); code != 200 {
				t.Fatalf("/healthz without credentials: %d, want 200", code)
			}
			for _, c := range []struct {
				name string
				set  func(*http.Request)
			}{{"none", nil}, {"wrong password", basic("alice", "wrong-one")}, {"unknown user", basic("mallory", "alice-secret")}, {"wrong token", bearer(token + "x")}} {
				code, _ := call("PUT", "/v1/kv/k", "v", c.set)
				if code != http.StatusUnauthorized {
					t.Fatalf("PUT with %s: %d, want 401", c.name, code)
				}
			}
			if code, body := call("PUT", "/v1/kv/k", "v1", basic("alice", "alice-secret")); code/100 != 2 {
				t.Fatalf("PUT as alice: %d %s", code, body)
			}
			if code, body := call("GET", "/v1/kv/k", "", bearer(token)); code != 200 || !strings.Contains(body, "v1") {
				t.Fatalf("GET with the token: %d %s", code, body)
			}
			code, _ := call("GET", "/metrics", "", nil)
			if want := map[bool]int{false: 401, true: 200}[openMetrics]; code != want {
				t.Fatalf("/metrics without credentials, open-metrics %v: %d, want %d", openMetrics, code, want)
			}
			if code, _ := call("GET", "/metrics", "", basic("alice", "alice-secret")); code != 200 {
				t.Fatalf("/metrics as alice: %d", code)
			}
			// Plain HTTP to the TLS port is refused.
			resp, err := http.Get("http://" + s.HTTPAddr() + "/healthz")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && strings.Contains(string(b), "ok") {
					t.Fatalf("plain HTTP was served on the TLS port")
				}
			}
			curl, err := exec.LookPath("curl")
			if err != nil {
				t.Logf("curl not installed: the curl --cacert check is skipped")
				return
			}
			out, err := exec.Command(curl, "-sS", "--fail", "--cacert", ca.CertFile, "-u", "alice:alice-secret", base+"/v1/kv/k").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "v1") {
				t.Fatalf("curl --cacert -u alice: %v: %s", err, out)
			}
		})
	}
}

// A node refuses to listen beyond loopback without authentication unless
// told --insecure (checked before anything is bound).
func TestRefusesToListenBeyondLoopbackWithoutAuth(t *testing.T) {
	base := Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: "127.0.0.1:7000", RespAddr: "127.0.0.1:6379", HTTPAddr: "127.0.0.1:8080"}
	if _, err := loadSecurity(base, "127.0.0.1:7000"); err != nil {
		t.Fatalf("loopback only: %v", err)
	}
	for _, c := range []struct {
		flag string
		mod  func(*Config) string
	}{
		{"--resp-addr", func(c *Config) string { c.RespAddr = "0.0.0.0:6379"; return "127.0.0.1:7000" }},
		{"--http-addr", func(c *Config) string { c.HTTPAddr = "10.1.2.3:8080"; return "127.0.0.1:7000" }},
		{"--peer-addr", func(c *Config) string { return "0.0.0.0:7000" }},
	} {
		cfg := base
		bind := c.mod(&cfg)
		_, err := loadSecurity(cfg, bind)
		if err == nil || !strings.Contains(err.Error(), c.flag) || !strings.Contains(err.Error(), "--insecure") {
			t.Fatalf("%s beyond loopback without auth: %v, want a refusal naming %s and --insecure", c.flag, err, c.flag)
		}
		// Start refuses it too, before binding anything.
		cfg.DataDir = t.TempDir()
		if c.flag != "--peer-addr" {
			if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "--insecure") {
				t.Fatalf("Start with %s beyond loopback: %v", c.flag, err)
			}
		}
		cfg.Insecure = true
		if _, err := loadSecurity(cfg, bind); err != nil {
			t.Fatalf("%s with --insecure: %v", c.flag, err)
		}
	}
}

// On a node with users, API snapshots go only under --snapshot-root.
func TestSnapshotsStayUnderTheSnapshotRoot(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	h, _ := auth.HashPassword("alice-secret")
	if err := auth.Update(users, auth.SetPassword("alice", h)); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "snapshots")
	for _, withRoot := range []bool{false, true} {
		cfg := Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
			HTTPAddr: "127.0.0.1:0", Replicas: 1, AuthFile: users}
		if withRoot {
			cfg.SnapshotRoot = root
			os.MkdirAll(root, 0o755)
		}
		s, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		post := func(target string) int {
			req, _ := http.NewRequest("POST", "http://"+s.HTTPAddr()+"/v1/snapshot?dir="+target, nil)
			req.SetBasicAuth("alice", "alice-secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if !withRoot {
			if code := post(filepath.Join(dir, "anywhere")); code != http.StatusForbidden {
				t.Fatalf("snapshot on a node with users and no --snapshot-root: %d, want 403", code)
			}
		} else {
			if code := post(filepath.Join(dir, "outside")); code != http.StatusForbidden {
				t.Fatalf("snapshot outside --snapshot-root: %d, want 403", code)
			}
			if code := post(filepath.Join(root, "..", "escape")); code != http.StatusForbidden {
				t.Fatalf("snapshot escaping --snapshot-root with ..: %d, want 403", code)
			}
			if code := post(filepath.Join(root, "s1")); code != http.StatusOK {
				t.Fatalf("snapshot under --snapshot-root: %d, want 200", code)
			}
		}
		s.Close()
	}
}
