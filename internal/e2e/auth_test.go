package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ringkv/ringkv/internal/testcerts"
)

// The CLI end to end: `ringkv user add` writes the users file, a node
// started with it and with TLS on its client ports refuses the CLI without
// credentials, and serves `ringkv put/get/status` with --user and
// RINGKV_PASSWORD (or a token from `ringkv user token`) and --cacert.
func TestCLIWithUsersAndTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	bin := ringkvBinary(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	run := func(env []string, stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(nil, "correct-horse-battery\n", "user", "add", "alice", "--auth-file", users); err != nil {
		t.Fatalf("ringkv user add: %v\n%s", err, out)
	}
	tokOut, err := exec.Command(bin, "user", "token", "ci", "--auth-file", users).Output()
	if err != nil {
		t.Fatalf("ringkv user token: %v", err)
	}
	token := strings.TrimSpace(string(tokOut))
	if out, err := run(nil, "", "user", "list", "--auth-file", users); err != nil || out != "alice\nci\n" {
		t.Fatalf("ringkv user list: %q %v", out, err)
	}
	ca, err := testcerts.NewCA(dir, "clients")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("localhost", "127.0.0.21")
	if err != nil {
		t.Fatal(err)
	}
	ip := "127.0.0.21"
	n := &node{id: "n1", dir: t.TempDir(), resp: addrOn(t, ip), http: addrOn(t, ip), peer: addrOn(t, ip),
		log: &strings.Builder{}, logMu: new(sync.Mutex),
		extra: []string{"--replicas", "1", "--auth-file", users, "--tls-cert", cert, "--tls-key", key}}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("--- log of n1 ---\n%s", n.logs())
		}
	})
	n.start(t, bin)

	cli := func(env []string, args ...string) (string, error) {
		return run(env, "", append(args, "--addr", n.http, "--cacert", ca.CertFile)...)
	}
	if out, err := cli(nil, "put", "k", "v1"); err == nil || !strings.Contains(out, "401") {
		t.Fatalf("put without credentials: %v\n%s", err, out)
	}
	if out, err := cli([]string{"RINGKV_PASSWORD=wrong-password"}, "put", "k", "v1", "--user", "alice"); err == nil {
		t.Fatalf("put with a wrong password succeeded:\n%s", out)
	}
	if out, err := cli([]string{"RINGKV_PASSWORD=correct-horse-battery"}, "put", "k", "v1", "--user", "alice"); err != nil {
		t.Fatalf("put as alice: %v\n%s", err, out)
	}
	if out, err := cli([]string{"RINGKV_TOKEN=" + token}, "get", "k"); err != nil || !strings.Contains(out, "v1") {
		t.Fatalf("get with the token: %v\n%s", err, out)
	}
	if out, err := cli([]string{"RINGKV_USER=alice", "RINGKV_PASSWORD=correct-horse-battery"}, "status"); err != nil || !strings.Contains(out, "n1") {
		t.Fatalf("status with RINGKV_USER and RINGKV_PASSWORD: %v\n%s", err, out)
	}
	// Without --cacert the node's certificate is not trusted.
	if out, err := run([]string{"RINGKV_TOKEN=" + token}, "", "get", "k", "--addr", "https://"+n.http); err == nil {
		t.Fatalf("get without --cacert trusted the node's certificate:\n%s", out)
	}
}

// addrOn returns a free address on ip.
func addrOn(t *testing.T, ip string) string {
	return fmt.Sprintf("%s:%d", ip, freePort(t, ip))
}
