package dockerfaults

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	httpapi "github.com/ringkv/ringkv/api/http"
)

var flagSeed = flag.Int64("seed", 0, "seed of the fault schedules and workloads (0: random, printed)")

// runID names everything this test binary creates in Docker, so that
// concurrent runs never touch each other's containers, networks or image.
var runID = func() string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b))
}()

// The image is built once per test binary run and removed by TestMain.
var (
	imageOnce  sync.Once
	imageTag   string // set once the image exists
	imageErr   error
	skipReason string
	buildDir   string
	buildLog   []string
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if imageTag != "" {
		out, err := exec.Command("docker", "rmi", "-f", imageTag).CombinedOutput()
		fmt.Printf("dockerfaults: docker rmi -f %s: %s %v\n", imageTag, bytes.TrimSpace(out), errOrNil(err))
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// dockerAvailable reports why Docker cannot be used ("" when it can).
func dockerAvailable() string {
	if _, err := exec.LookPath("docker"); err != nil {
		return "no docker command in PATH"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return fmt.Sprintf("docker info failed (no reachable Docker daemon): %v: %s", err, bytes.TrimSpace(out))
	}
	return ""
}

// image returns the tag of the test image, building the static binary and
// the image on first use; without Docker the test is skipped.
func image(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		if skipReason = dockerAvailable(); skipReason != "" {
			return
		}
		imageErr = buildImage()
	})
	for _, l := range buildLog { // written only inside imageOnce
		t.Log(l)
	}
	if skipReason != "" {
		t.Skipf("skipped: %s", skipReason)
	}
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageTag
}

func buildImage() error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "ringkv-dockerfaults-")
	if err != nil {
		return err
	}
	buildDir = dir
	// The operators' Dockerfile, from the repository (tests run in the
	// package directory).
	df, err := os.ReadFile(filepath.Join("..", "..", "deploy", "docker", "Dockerfile"))
	if err != nil {
		return fmt.Errorf("read the Dockerfile: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, "ringkv"), "github.com/ringkv/ringkv/cmd/ringkv")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("CGO_ENABLED=0 go build ./cmd/ringkv: %v\n%s", err, out)
	}
	buildLog = append(buildLog, fmt.Sprintf("built the static binary in %v", time.Since(start).Round(time.Millisecond)))
	tag := "ringkv-dockerfaults:" + runID
	// The legacy builder needs nothing but the daemon (BuildKit's client
	// plugin may be missing); the context holds only the binary and the
	// Dockerfile, and FROM scratch pulls nothing.
	b := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir)
	b.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	out, err := b.CombinedOutput()
	buildLog = append(buildLog, fmt.Sprintf("$ DOCKER_BUILDKIT=0 docker build -q -t %s %s  (%v)", tag, dir, time.Since(start).Round(time.Millisecond)))
	if err != nil {
		return fmt.Errorf("docker build: %v\n%s", err, out)
	}
	imageTag = tag
	return nil
}

// dockerCmd runs `docker args...` (bounded), logging the command so that a
// failure can be replayed by hand; it returns stdout.
func dockerCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("$ docker %s  (%v)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerCmd(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cluster is one scenario's nodes and networks.
type cluster struct {
	t       *testing.T
	image   string
	prefix  string // of every container and network name
	clNet   string // client network: published ports, no container-to-container traffic
	peerNet string // internal network the nodes talk on
	subnet  string // the peer network's first three octets
	nodes   []*node
	hc      *http.Client
}

// node is one ringkv container. Its published ports change when the
// container is started again, so they are looked up after every start.
type node struct {
	c         *cluster
	id        string // ringkv node ID: n1, n2, ...
	container string // container name
	ip        string // fixed address on the peer network
	args      []string

	mu         sync.Mutex
	resp, http string // published on 127.0.0.1
	rcs        [2]*redis.Client
	rcAddr     string
}

func (n *node) peerAddr() string { return n.ip + ":7000" }

// addrs returns the node's published RESP and HTTP addresses.
func (n *node) addrs() (resp, http string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.resp, n.http
}

// redis returns a client for the node's current RESP address, at the
// node's default levels (sloppy quorum: fallbacks count) or, with strict,
// on connections that demand a quorum of primaries for reads and writes
// (RINGKV.CONFIG SET pr|pw QUORUM), the mode in which R+W>N reads are
// promised. Clients never retry a command (MaxRetries -1): a retried write
// would be a second write.
func (n *node) redis(strict bool) *redis.Client {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rcAddr != n.resp {
		for i, rc := range n.rcs {
			if rc != nil {
				rc.Close()
				n.rcs[i] = nil
			}
		}
		n.rcAddr = n.resp
	}
	i := 0
	if strict {
		i = 1
	}
	if n.rcs[i] == nil {
		o := &redis.Options{Addr: n.resp, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second,
			ReadTimeout: 4 * time.Second, WriteTimeout: 4 * time.Second, PoolSize: 4}
		if strict {
			o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
				if err := cn.Do(ctx, "RINGKV.CONFIG", "SET", "pr", "QUORUM").Err(); err != nil {
					return err
				}
				return cn.Do(ctx, "RINGKV.CONFIG", "SET", "pw", "QUORUM").Err()
			}
		}
		n.rcs[i] = redis.NewClient(o)
	}
	return n.rcs[i]
}

func (n *node) closeClients() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, rc := range n.rcs {
		if rc != nil {
			rc.Close()
			n.rcs[i] = nil
		}
	}
}

// newCluster creates the scenario's networks and size nodes, starts them
// and waits until every node sees every member alive. Everything it
// creates is removed by t.Cleanup, by name, even when the test fails.
func newCluster(t *testing.T, name string, size int) *cluster {
	return newClusterArgs(t, name, size, nil)
}

// newClusterArgs is newCluster with extra server flags for node i (0-based)
// from extra, when not nil (e.g. --dc).
func newClusterArgs(t *testing.T, name string, size int, extra func(i int) []string) *cluster {
	img := image(t)
	c := &cluster{t: t, image: img, prefix: fmt.Sprintf("rkvdf-%s-%s", runID, name),
		// Connections are kept alive: fewer short-lived loopback
		// connections (whose ports other tests' free-port probes could
		// meet). A PUT on a connection that died is not replayed by the
		// transport (not idempotent for net/http); it fails, recorded.
		hc: &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}}}
	c.clNet = c.prefix + "-client"
	mustDocker(t, "network", "create", "--label", "ringkv-dockerfaults="+runID,
		"-o", "com.docker.network.bridge.enable_icc=false", c.clNet)
	t.Cleanup(func() { dockerCmd(t, "network", "rm", c.clNet) })
	// The peer network needs a subnet of our choosing (fixed IPs); pick
	// one at random and try another if Docker says it overlaps.
	c.peerNet = c.prefix + "-peer"
	var err error
	for try := 0; try < 10; try++ {
		b := make([]byte, 2)
		rand.Read(b)
		c.subnet = fmt.Sprintf("10.%d.%d", 100+int(b[0])%100, b[1])
		if _, err = dockerCmd(t, "network", "create", "--label", "ringkv-dockerfaults="+runID, "--internal",
			"--subnet", c.subnet+".0/24", c.peerNet); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no subnet for the peer network: %v", err)
	}
	t.Cleanup(func() { dockerCmd(t, "network", "rm", c.peerNet) })

	for i := 0; i < size; i++ {
		n := &node{c: c, id: fmt.Sprintf("n%d", i+1), container: fmt.Sprintf("%s-n%d", c.prefix, i+1),
			ip: fmt.Sprintf("%s.%d", c.subnet, 11+i)}
		n.args = []string{"--node-id", n.id, "--peer-addr", n.peerAddr(), "--timeout", "1s", "--insecure"}
		if i > 0 {
			n.args = append(n.args, "--join", c.nodes[0].peerAddr())
		}
		if extra != nil {
			n.args = append(n.args, extra(i)...)
		}
		c.nodes = append(c.nodes, n)
	}
	// Registered after the networks' cleanups, so it runs before them
	// (LIFO), and before any container exists, so a failed creation still
	// removes what was made.
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("RINGKV_DOCKERFAULTS_LOGS") != "" {
			for _, n := range c.nodes {
				out, _ := exec.Command("docker", "logs", "--tail", "150", n.container).CombinedOutput()
				t.Logf("--- last log lines of %s (%s) ---\n%s", n.id, n.container, out)
			}
		}
		c.hc.CloseIdleConnections()
		for _, n := range c.nodes {
			n.closeClients()
			dockerCmd(t, "rm", "-f", "-v", n.container)
		}
	})
	for _, n := range c.nodes {
		n.create(t)
	}
	for _, n := range c.nodes {
		n.start(t)
	}
	c.waitAlive(t, c.nodes, c.nodes, 40*time.Second)
	return c
}

// create makes the node's container (not started): client network with
// ports published on 127.0.0.1, then the peer network at its fixed IP.
func (n *node) create(t *testing.T) {
	t.Helper()
	args := []string{"create", "--name", n.container, "--label", "ringkv-dockerfaults=" + runID,
		"--network", n.c.clNet, "-p", "127.0.0.1::6379", "-p", "127.0.0.1::8080", n.c.image}
	mustDocker(t, append(args, n.args...)...)
	mustDocker(t, "network", "connect", "--ip", n.ip, n.c.peerNet, n.container)
}

// start starts the container and waits until its HTTP API answers.
func (n *node) start(t *testing.T) {
	t.Helper()
	mustDocker(t, "start", n.container)
	resp := publishedPort(t, n.container, "6379/tcp")
	httpAddr := publishedPort(t, n.container, "8080/tcp")
	n.mu.Lock()
	n.resp, n.http = resp, httpAddr
	n.mu.Unlock()
	waitFor(t, 30*time.Second, n.id+" answers /healthz", func() bool {
		r, err := n.c.hc.Get("http://" + httpAddr + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
}

func (n *node) kill(t *testing.T) { mustDocker(t, "kill", n.container) }

// publishedPort returns the 127.0.0.1 address a container port is
// published on.
func publishedPort(t *testing.T, container, port string) string {
	t.Helper()
	out := mustDocker(t, "port", container, port)
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "127.0.0.1:") {
			return l
		}
	}
	t.Fatalf("%s %s is not published on 127.0.0.1: %q", container, port, out)
	return ""
}

// status reads /v1/cluster from node n.
func (c *cluster) status(n *node) (httpapi.ClusterStatus, error) {
	var st httpapi.ClusterStatus
	_, h := n.addrs()
	r, err := c.hc.Get("http://" + h + "/v1/cluster")
	if err != nil {
		return st, err
	}
	defer r.Body.Close()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return st, err
	}
	if r.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/v1/cluster: %d %s", r.StatusCode, body)
	}
	return st, json.Unmarshal(body, &st)
}

// aliveSet returns the members n sees alive and in state normal.
func (c *cluster) aliveSet(n *node) (map[string]bool, error) {
	st, err := c.status(n)
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, ms := range st.Members {
		if ms.Alive && ms.State == "normal" {
			m[ms.ID] = true
		}
	}
	return m, nil
}

// waitAlive waits until every observer sees exactly the members of want
// alive (and no other).
func (c *cluster) waitAlive(t *testing.T, observers, want []*node, d time.Duration) {
	t.Helper()
	var last string
	ok := pollUntil(d, func() bool {
		for _, o := range observers {
			m, err := c.aliveSet(o)
			if err != nil {
				last = fmt.Sprintf("%s: %v", o.id, err)
				return false
			}
			if len(m) != len(want) {
				last = fmt.Sprintf("%s sees %v alive", o.id, m)
				return false
			}
			for _, w := range want {
				if !m[w.id] {
					last = fmt.Sprintf("%s sees %v alive", o.id, m)
					return false
				}
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("timed out after %v waiting until %s see %s alive: %s", d, ids(observers), ids(want), last)
	}
}

// hintsKept sums the hints every node that answers keeps, per target.
func (c *cluster) hintsKept() (total int, detail string) {
	var parts []string
	for _, n := range c.nodes {
		st, err := c.status(n)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: unreachable", n.id))
			continue
		}
		for _, m := range st.Members {
			if m.HintsPending > 0 {
				total += m.HintsPending
				parts = append(parts, fmt.Sprintf("%s keeps %d for %s", n.id, m.HintsPending, m.ID))
			}
		}
	}
	return total, strings.Join(parts, ", ")
}

// waitHintsDrained waits until no node keeps hints for any member; it
// returns how long that took and what was pending at the first look, or an
// error naming what is still pending.
func (c *cluster) waitHintsDrained(d time.Duration) (time.Duration, string, error) {
	start := time.Now()
	var first, last string
	ok := pollUntil(d, func() bool {
		var pending []string
		for _, n := range c.nodes {
			st, err := c.status(n)
			if err != nil {
				last = fmt.Sprintf("%s: %v", n.id, err)
				return false
			}
			for _, m := range st.Members {
				if m.HintsPending > 0 {
					pending = append(pending, fmt.Sprintf("%s keeps %d for %s (last delivery error %q)", n.id, m.HintsPending, m.ID, m.HintError))
				}
			}
		}
		last = strings.Join(pending, "; ")
		if first == "" {
			first = last
		}
		return len(pending) == 0
	})
	if !ok {
		return time.Since(start), first, errors.New(last)
	}
	return time.Since(start), first, nil
}

func ids(ns []*node) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = n.id
	}
	return "[" + strings.Join(s, " ") + "]"
}

// pollUntil calls cond every 100ms until it holds or d passes.
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !pollUntil(d, cond) {
		t.Fatalf("timed out after %v waiting: %s", d, what)
	}
}

// isolate cuts n off the peer network; heal reconnects it at its IP.
func (c *cluster) isolate(t *testing.T, n *node) {
	mustDocker(t, "network", "disconnect", c.peerNet, n.container)
}

func (c *cluster) reconnect(t *testing.T, n *node) {
	mustDocker(t, "network", "connect", "--ip", n.ip, c.peerNet, n.container)
}

// partition cuts the nodes of a from those of b, both ways, by iptables
// rules that drop the other side's packets in each container's network
// namespace (a silent loss: senders time out). It returns the function
// that removes the rules, or an error if the host cannot do it (not
// root, no nsenter or iptables).
func (c *cluster) partition(t *testing.T, a, b []*node) (heal func(), err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("not root")
	}
	for _, tool := range []string{"nsenter", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("no %s: %w", tool, err)
		}
	}
	type rule struct {
		pid string
		n   *node
		src string
	}
	var rules []rule
	for _, side := range [][2][]*node{{a, b}, {b, a}} {
		for _, n := range side[0] {
			pid := mustDocker(t, "inspect", "-f", "{{.State.Pid}}", n.container)
			for _, o := range side[1] {
				rules = append(rules, rule{pid, n, o.ip})
			}
		}
	}
	ipt := func(op string, r rule) error {
		args := []string{"-t", r.pid, "-n", "iptables", op, "INPUT", "-s", r.src, "-j", "DROP"}
		out, err := exec.Command("nsenter", args...).CombinedOutput()
		t.Logf("$ nsenter %s   (in %s)", strings.Join(args, " "), r.n.container)
		if err != nil {
			return fmt.Errorf("nsenter %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	var done []rule
	undo := func() {
		for _, r := range done {
			if err := ipt("-D", r); err != nil {
				t.Error(err)
			}
		}
	}
	for _, r := range rules {
		if err := ipt("-I", r); err != nil {
			undo()
			return nil, err
		}
		done = append(done, r)
	}
	return undo, nil
}
