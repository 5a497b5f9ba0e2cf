package resp

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// These tests drive the server with the real Redis tools (Debian package
// redis-tools). They skip when the binaries are not installed.

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found in PATH (install the redis-tools package to run this test): %v", name, err)
	}
	return p
}

func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRedisCLI(t *testing.T) {
	cli := lookTool(t, "redis-cli")
	_, addr := startServer(t, nil, Options{})
	host, port, _ := net.SplitHostPort(addr)
	run := func(args ...string) string {
		return strings.TrimSpace(runTool(t, cli, append([]string{"-h", host, "-p", port}, args...)...))
	}
	if got := run("PING"); got != "PONG" {
		t.Fatalf("PING: %q", got)
	}
	if got := run("SET", "greeting", "hello world"); got != "OK" {
		t.Fatalf("SET: %q", got)
	}
	if got := run("GET", "greeting"); got != "hello world" {
		t.Fatalf("GET: %q", got)
	}
	if got := run("INFO"); !strings.Contains(got, "redis_version:") || !strings.Contains(got, "backend:memory") {
		t.Fatalf("INFO: %q", got)
	}
	if got := run("-3", "RINGKV.SIBLINGS", "greeting"); !strings.Contains(got, "hello world") {
		t.Fatalf("RINGKV.SIBLINGS over RESP3: %q", got)
	}
	if got := run("SET", "k", "v", "EX", "10"); !strings.Contains(got, "does not support key expiry") {
		t.Fatalf("SET EX: %q", got)
	}
}

func TestRedisBenchmark(t *testing.T) {
	bench := lookTool(t, "redis-benchmark")
	s, addr := startServer(t, nil, Options{})
	host, port, _ := net.SplitHostPort(addr)
	out := runTool(t, bench, "-h", host, "-p", port, "-t", "set,get", "-n", "20000", "-c", "20", "-P", "16", "-q")
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r", "\n"), "\n") {
		if strings.Contains(l, "requests per second") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if !strings.Contains(out, "SET:") || !strings.Contains(out, "GET:") || strings.Contains(strings.ToLower(out), "error") {
		t.Fatalf("redis-benchmark output:\n%s", out)
	}
	st := s.Stats()
	for _, name := range []string{"set", "get"} {
		c := st.Commands[name]
		if c.Calls < 20000 || c.Errors != 0 {
			t.Fatalf("%s: %+v", name, c)
		}
	}
	if st.ProtocolErrors != 0 {
		t.Fatalf("%d protocol errors", st.ProtocolErrors)
	}
}
