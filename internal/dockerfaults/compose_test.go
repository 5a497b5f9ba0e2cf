package dockerfaults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// composeFile is the operators' compose file (tests run in the package
// directory).
var composeFile = filepath.Join("..", "..", "deploy", "compose.yaml")

// TestComposeCluster runs deploy/compose.yaml as shipped, on the image the
// other tests use (RINGKV_IMAGE) and with every client port published on a
// port Docker picks on 127.0.0.1 (the RINGKV_RK*_PORT variables set empty),
// under a project name of its own: three nodes addressed by service name
// (--peer-addr rk1:7000, --join rk1:7000) must all see each other alive,
// keep those names as their peer addresses, and serve writes and reads that
// need every replica (W=ALL, R=ALL) through each node. Then rk2 is
// restarted (`docker-compose restart rk2`) and, once more, stopped and
// started at another IP (its address taken while it is down): each time it
// rejoins by name and every node serves W=ALL and R=ALL again. Everything
// is removed with `docker-compose down -v`, also on failure.
func TestComposeCluster(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("skipped: no docker-compose command in PATH")
	}
	img := image(t) // skips without a reachable Docker daemon
	start := time.Now()
	project := "rkcompose" + strings.ReplaceAll(runID, "-", "")
	network := project + "_default"
	env := append(os.Environ(), "RINGKV_IMAGE="+img)
	for _, n := range []string{"RK1", "RK2", "RK3"} {
		env = append(env, "RINGKV_"+n+"_RESP_PORT=", "RINGKV_"+n+"_HTTP_PORT=")
	}
	compose := func(args ...string) (string, error) {
		t.Helper()
		args = append([]string{"-p", project, "-f", composeFile}, args...)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "docker-compose", args...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		t0 := time.Now()
		err := cmd.Run()
		t.Logf("$ RINGKV_IMAGE=%s docker-compose %s  (%v)", img, strings.Join(args, " "), time.Since(t0).Round(time.Millisecond))
		if err != nil {
			return stdout.String(), fmt.Errorf("docker-compose %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
		}
		return strings.TrimSpace(stdout.String()), nil
	}
	mustCompose := func(args ...string) string {
		t.Helper()
		out, err := compose(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	c := &cluster{t: t, image: img, prefix: project,
		hc: &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}}
	for _, id := range []string{"rk1", "rk2", "rk3"} {
		c.nodes = append(c.nodes, &node{c: c, id: id})
	}
	squatter := project + "-squatter"
	// Registered before anything exists, so a failed `up` is still taken
	// down; the squatter (see below) goes first, or the network stays.
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("RINGKV_DOCKERFAULTS_LOGS") != "" {
			out, _ := compose("logs", "--no-color", "--tail", "80")
			t.Logf("--- last log lines ---\n%s", out)
		}
		c.hc.CloseIdleConnections()
		for _, n := range c.nodes {
			n.closeClients()
		}
		exec.Command("docker", "rm", "-f", squatter).Run()
		if _, err := compose("down", "-v", "--timeout", "5"); err != nil {
			t.Error(err)
		}
	})

	mustCompose("up", "-d")
	for _, n := range c.nodes {
		// The docker CLI answers in milliseconds, docker-compose in seconds.
		n.container = mustDocker(t, "ps", "-aq", "--no-trunc", "--filter", "label=com.docker.compose.project="+project,
			"--filter", "label=com.docker.compose.service="+n.id)
		if n.container == "" || strings.Contains(n.container, "\n") {
			t.Fatalf("service %s: want one container, found %q", n.id, n.container)
		}
	}
	// lookPorts reads a node's published ports (127.0.0.1 only; they
	// change when a container is started again).
	lookPorts := func(n *node) {
		t.Helper()
		resp, h := publishedPort(t, n.container, "6379/tcp"), publishedPort(t, n.container, "8080/tcp")
		n.mu.Lock()
		n.resp, n.http = resp, h
		n.mu.Unlock()
	}
	for _, n := range c.nodes {
		lookPorts(n)
	}
	c.waitAlive(t, c.nodes, c.nodes, 40*time.Second)
	t.Logf("three nodes alive %v after the start of the test", time.Since(start).Round(time.Millisecond))

	// Each node's record keeps its name as its peer address.
	st, err := c.status(c.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if want := m.ID + ":7000"; m.PeerAddr != want {
			t.Errorf("member %s advertises peer address %q, want its name %q", m.ID, m.PeerAddr, want)
		}
	}

	ctx := context.Background()
	// all returns a client of n's RESP port at W=ALL and R=ALL: a write
	// or read succeeds only if n reaches both other nodes by name.
	all := func(n *node) *redis.Client {
		resp, _ := n.addrs()
		return redis.NewClient(&redis.Options{Addr: resp, MaxRetries: -1, DialTimeout: time.Second,
			ReadTimeout: 4 * time.Second, WriteTimeout: 4 * time.Second, PoolSize: 1,
			OnConnect: func(ctx context.Context, cn *redis.Conn) error {
				if err := cn.Do(ctx, "RINGKV.CONFIG", "SET", "w", "ALL").Err(); err != nil {
					return err
				}
				return cn.Do(ctx, "RINGKV.CONFIG", "SET", "r", "ALL").Err()
			}})
	}
	_, noCLI := exec.LookPath("redis-cli")
	if noCLI != nil {
		t.Log("no redis-cli in PATH: reads through go-redis only")
	}
	round := 0
	// setGetEverywhere writes a key through each node and reads every key
	// back through every node, at ALL; redis-cli, when present, reads too.
	setGetEverywhere := func(phase string) {
		t.Helper()
		round++
		clients := make([]*redis.Client, len(c.nodes))
		for i, n := range c.nodes {
			clients[i] = all(n)
			defer clients[i].Close()
		}
		keys := map[string]string{}
		for i, n := range c.nodes {
			k, v := fmt.Sprintf("compose-%d-%s", round, n.id), fmt.Sprintf("v%d-%s", round, n.id)
			// A node just back may refuse ALL for a moment while its peers'
			// views of it settle; retry the (idempotent) write briefly.
			var err error
			if !pollUntil(10*time.Second, func() bool { err = clients[i].Set(ctx, k, v, 0).Err(); return err == nil }) {
				t.Fatalf("%s: SET %s at W=ALL through %s: %v", phase, k, n.id, err)
			}
			keys[k] = v
		}
		for k, v := range keys {
			for i, n := range c.nodes {
				if got, err := clients[i].Get(ctx, k).Result(); err != nil || got != v {
					t.Fatalf("%s: GET %s at R=ALL through %s: %q, %v; want %q", phase, k, n.id, got, err, v)
				}
				if noCLI == nil {
					resp, _ := n.addrs()
					host, port, _ := strings.Cut(resp, ":")
					out, err := exec.Command("redis-cli", "-h", host, "-p", port, "get", k).CombinedOutput()
					if got := strings.TrimSpace(string(out)); err != nil || got != v {
						t.Fatalf("%s: redis-cli -p %s get %s (%s): %q, %v; want %q", phase, port, k, n.id, got, err, v)
					}
				}
			}
		}
		t.Logf("%s: %d keys written at W=ALL and read at R=ALL through each of %s", phase, len(keys), ids(c.nodes))
	}
	setGetEverywhere("after up")

	rk2 := c.nodes[1]
	containerIP := func(id string) string {
		return mustDocker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", id)
	}
	cid := rk2.container
	ip0 := containerIP(cid)

	// A restart: SIGTERM, a clean stop, started again on its volume.
	mustCompose("restart", "rk2")
	lookPorts(rk2)
	c.waitAlive(t, c.nodes, c.nodes, 30*time.Second)
	t.Logf("rk2 restarted (IP %s, before %s) and rejoined", containerIP(cid), ip0)
	setGetEverywhere("after docker-compose restart rk2")

	// Stopped and started at another IP: while it is down its address goes
	// to another container (Docker would give it back otherwise), and it is
	// reconnected under its service name only.
	mustDocker(t, "stop", "-t", "15", cid)
	mustDocker(t, "network", "disconnect", network, cid)
	mustDocker(t, "run", "-d", "--name", squatter, "--network", network, img, "--node-id", "squatter", "--peer-addr", "127.0.0.1:7000", "--insecure", "--quiet")
	mustDocker(t, "network", "connect", "--alias", "rk2", network, cid)
	mustDocker(t, "start", cid)
	ip1 := containerIP(cid)
	if ip1 == ip0 {
		t.Fatalf("rk2 came back at its old IP %s; the test meant to move it", ip0)
	}
	lookPorts(rk2)
	c.waitAlive(t, c.nodes, c.nodes, 30*time.Second)
	t.Logf("rk2 moved from %s to %s and rejoined by name", ip0, ip1)
	mustDocker(t, "rm", "-f", squatter)
	setGetEverywhere("after rk2 came back at another IP")
	t.Logf("done in %v", time.Since(start).Round(time.Millisecond))
}
