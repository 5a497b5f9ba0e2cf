package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// buildBinary builds cmd/ringkv once per test binary run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func ringkvBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ringkv-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ringkv")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/ringkv/ringkv/cmd/ringkv").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// handedOut holds the ports freePort returned (and the one after each),
// per IP: the kernel may offer a port again once its probe is closed, and
// a node's ports are all picked before it binds any of them.
var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// freePort finds a port p on ip such that p and p+1 are free for TCP and
// UDP (the peer port and the gossip port after it), and neither was
// handed out before.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatalf("listen on %s: %v", ip, err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := !handedOut.ports[fmt.Sprintf("%s:%d", ip, p)] && !handedOut.ports[fmt.Sprintf("%s:%d", ip, p+1)]
		for _, port := range []int{p, p + 1} {
			tl, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			ul, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", ip, port))
			tl.Close()
			if err != nil {
				ok = false
				break
			}
			ul.Close()
		}
		if ok && p < 65000 {
			handedOut.ports[fmt.Sprintf("%s:%d", ip, p)] = true
			handedOut.ports[fmt.Sprintf("%s:%d", ip, p+1)] = true
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

type node struct {
	id, dir          string
	resp, http, peer string
	join             string
	extra            []string // more server flags
	cmd              *exec.Cmd
	log              *strings.Builder
	logMu            *sync.Mutex
}

func (n *node) start(t *testing.T, bin string) {
	t.Helper()
	args := []string{"server", "--node-id", n.id, "--data-dir", n.dir,
		"--resp-addr", n.resp, "--http-addr", n.http, "--peer-addr", n.peer, "--replicas", "3",
		"--timeout", "1s"}
	if n.join != "" {
		args = append(args, "--join", n.join)
	}
	args = append(args, n.extra...)
	n.cmd = exec.Command(bin, args...)
	pr, pw := io.Pipe()
	n.cmd.Stderr = pw
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			n.logMu.Lock()
			n.log.WriteString(sc.Text() + "\n")
			n.logMu.Unlock()
		}
	}()
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		_, err := bufio.NewReader(stdout).ReadString('\n')
		ready <- err
		io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("node %s did not start: %v\n%s", n.id, err, n.logs())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s did not start in time\n%s", n.id, n.logs())
	}
}

func (n *node) logs() string {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	s := n.log.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

func (n *node) kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Signal(syscall.SIGKILL)
		n.cmd.Wait()
		n.cmd = nil
	}
}

// startCluster starts three nodes on 127.0.0.11-13.
func startCluster(t *testing.T) []*node { return startClusterOf(t, 3) }

// startClusterOf starts size nodes n1.. on 127.0.0.11.., each joining n1,
// with extra server flags.
func startClusterOf(t *testing.T, size int, extra ...string) []*node {
	return startClusterWith(t, ringkvBinary(t), size, extra...)
}

// startClusterWith is startClusterOf with the binary bin.
func startClusterWith(t *testing.T, bin string, size int, extra ...string) []*node {
	var nodes []*node
	for i := 0; i < size; i++ {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		n := &node{
			id:    fmt.Sprintf("n%d", i+1),
			dir:   t.TempDir(),
			resp:  fmt.Sprintf("%s:%d", ip, freePort(t, ip)),
			http:  fmt.Sprintf("%s:%d", ip, freePort(t, ip)),
			peer:  fmt.Sprintf("%s:%d", ip, freePort(t, ip)),
			log:   &strings.Builder{},
			logMu: &sync.Mutex{},
			extra: extra,
		}
		if i > 0 {
			n.join = nodes[0].peer
		}
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("--- log of %s ---\n%s", n.id, n.logs())
			}
		}
	})
	for _, n := range nodes {
		n.start(t, bin)
	}
	// Wait until every node sees three alive members.
	waitFor(t, 20*time.Second, fmt.Sprintf("all nodes see %d alive members", size), func() bool {
		for _, n := range nodes {
			if alive(t, n) != size {
				return false
			}
		}
		return true
	})
	return nodes
}

// alive asks a node over HTTP how many members it sees alive.
func alive(t *testing.T, n *node) int {
	resp, err := http.Get("http://" + n.http + "/v1/cluster")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Count(string(body), `"alive":true`)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClusterOfProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	nodes := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	clients := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.resp, MaxRetries: -1})
		defer clients[i].Close()
	}
	// Write through one node, read through every node.
	for i := 0; i < 50; i++ {
		key, val := fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)
		if err := clients[i%3].Set(ctx, key, val, 0).Err(); err != nil {
			t.Fatalf("SET %s via %s: %v", key, nodes[i%3].id, err)
		}
		for j, c := range clients {
			got, err := c.Get(ctx, key).Result()
			if err != nil || got != val {
				t.Fatalf("GET %s via %s: %q, %v; want %q", key, nodes[j].id, got, err, val)
			}
		}
	}
	// A pipeline of SETs, with a key written twice: stored and replicated
	// as batches (one message per peer over real TCP; W=2 needs another
	// replica's acknowledgement of it), then read back through another node
	// with R=ALL: one sibling each, the later value for the repeated key.
	pipe := clients[0].Pipeline()
	for i := 0; i < 40; i++ {
		pipe.Set(ctx, fmt.Sprintf("batch-%d", i), fmt.Sprintf("b%d", i), 0)
	}
	pipe.Set(ctx, "batch-5", "b5-again", 0)
	if cmds, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("pipelined SETs via n1: %v (%d replies)", err, len(cmds))
	}
	for i := 0; i < 40; i++ {
		key, want := fmt.Sprintf("batch-%d", i), fmt.Sprintf("b%d", i)
		if i == 5 {
			want = "b5-again"
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+nodes[2].http+"/v1/kv/"+key+"?r=ALL", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"value_text":"`+want+`"`) || strings.Count(string(body), `"value":`) != 1 {
			t.Fatalf("HTTP GET %s with r=ALL via n3: %d %s; want one sibling %q", key, resp.StatusCode, body, want)
		}
	}

	// HTTP sees the same data, with a causal context.
	resp, err := http.Get("http://" + nodes[1].http + "/v1/kv/k7")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Ringkv-Context") == "" || !strings.Contains(string(body), "siblings") {
		t.Fatalf("HTTP GET k7: %d %s (context %q)", resp.StatusCode, body, resp.Header.Get("X-Ringkv-Context"))
	}

	// The CLI talks to the cluster over HTTP: put, get (siblings and
	// context), status.
	bin := ringkvBinary(t)
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ringkv %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	cli("put", "cli-key", "cli-value", "--addr", nodes[0].http, "--w", "ALL")
	if out := cli("get", "cli-key", "--addr", nodes[2].http); !strings.Contains(out, "cli-value") || !strings.Contains(out, "context: ") {
		t.Fatalf("ringkv get: %s", out)
	}
	if out := cli("status", "--addr", nodes[1].http); strings.Count(out, "normal") != 3 || !strings.Contains(out, "seen from n2") {
		t.Fatalf("ringkv status: %s", out)
	}

	// kill -9 one node: R=W=2 (the default QUORUM of N=3) keeps working.
	nodes[2].kill()
	for i := 0; i < 30; i++ {
		key, val := fmt.Sprintf("after-kill-%d", i), fmt.Sprintf("w%d", i)
		if err := clients[i%2].Set(ctx, key, val, 0).Err(); err != nil {
			t.Fatalf("SET %s with n3 down: %v", key, err)
		}
		if got, err := clients[(i+1)%2].Get(ctx, key).Result(); err != nil || got != val {
			t.Fatalf("GET %s with n3 down: %q, %v", key, got, err)
		}
	}
	waitFor(t, 20*time.Second, "n1 marks n3 down", func() bool { return alive(t, nodes[0]) == 2 })

	// Restart it: it rejoins and serves reads, including of writes it missed
	// (read repair brings it up to date as keys are read).
	nodes[2].start(t, ringkvBinary(t))
	waitFor(t, 20*time.Second, "n3 alive again on every node", func() bool {
		for _, n := range nodes {
			if alive(t, n) != 3 {
				return false
			}
		}
		return true
	})
	c3 := redis.NewClient(&redis.Options{Addr: nodes[2].resp, MaxRetries: -1})
	defer c3.Close()
	for i := 0; i < 30; i++ {
		key, val := fmt.Sprintf("after-kill-%d", i), fmt.Sprintf("w%d", i)
		if got, err := c3.Get(ctx, key).Result(); err != nil || got != val {
			t.Fatalf("GET %s via restarted n3: %q, %v", key, got, err)
		}
	}
	if err := c3.Get(ctx, "never-written").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET of a missing key: %v, want redis.Nil", err)
	}
}
