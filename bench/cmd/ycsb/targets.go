package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/client"
)

// targetSpec is a system this harness can start, load and stop.
type targetSpec struct {
	name       string
	label      string // what it is, for the report
	guarantees string // what an acknowledged write means, for the report
	ringkv     bool   // a ringkv target (ratios are taken against the peers)
	start      func(dir string) (*live, error)
}

// live is a started target.
type live struct {
	procs     []*proc
	newDriver func(clients int) (driver, error)
	version   string
	// ringkv three-node targets, for the node-kill timeline.
	nodes []*rkNode
}

func (r *live) stop() {
	for _, p := range r.procs {
		p.stop()
	}
	for _, n := range r.nodes {
		n.p.stop() // a restarted node is a new proc
	}
}

var specs = []targetSpec{
	{
		name:       "ringkv-1",
		label:      "ringkv, one node (N=1), HTTP through the token-aware Go client",
		guarantees: "a write is acknowledged after its commit-log fsync (`--sync batch`, group commit) on the one node; no replica",
		ringkv:     true,
		start:      func(dir string) (*live, error) { return startRingkv(dir, 1, 1, "http") },
	},
	{
		name:       "ringkv-1-resp",
		label:      "ringkv, one node (N=1), Redis protocol through go-redis",
		guarantees: "as ringkv-1 (fsync before the acknowledgement), over RESP",
		ringkv:     true,
		start:      func(dir string) (*live, error) { return startRingkv(dir, 1, 1, "resp") },
	},
	{
		name:       "ringkv-3-w2",
		label:      "ringkv, three nodes, N=3, R=W=2, HTTP through the token-aware Go client",
		guarantees: "N=3, W=2: a write is acknowledged once two replicas have it fsynced (`--sync batch`); a read asks two replicas (R+W>N); concurrent writes are kept as siblings (dotted version vectors), never lost; any node coordinates (sloppy quorum, hinted handoff)",
		ringkv:     true,
		start:      func(dir string) (*live, error) { return startRingkv(dir, 3, 2, "http") },
	},
	{
		name:       "ringkv-3-w2-resp",
		label:      "as ringkv-3-w2, but over the Redis protocol through go-redis: one client per node, each key sent to the node its hash picks (with N=3 on three nodes every node is a replica of every key, so none forwards)",
		guarantees: "as ringkv-3-w2, over RESP (the server's default R=W=2: a GET asks two replicas, a SET is a blind write that supersedes what two replicas hold: checked inside the write, or read first when the coordinator is behind)",
		ringkv:     true,
		start:      func(dir string) (*live, error) { return startRingkv(dir, 3, 2, "resp-all") },
	},
	{
		name:       "ringkv-3-w2-rr",
		label:      "as ringkv-3-w2, but the Go client sends requests round-robin (not token-aware): a node that is not a replica of the key forwards it",
		guarantees: "as ringkv-3-w2",
		ringkv:     true,
		start:      func(dir string) (*live, error) { return startRingkv(dir, 3, 2, "http-rr") },
	},
	{
		name:       "ringkv-3-w1",
		label:      "ringkv, three nodes, N=3, R=W=1, HTTP through the token-aware Go client",
		guarantees: "N=3, W=1: a write is acknowledged once one replica has it fsynced, the other two get it asynchronously; a read asks one replica and may be stale (R+W≤N)",
		ringkv:     true,
		start:      func(dir string) (*live, error) { return startRingkv(dir, 3, 1, "http") },
	},
	{
		name:       "redis",
		label:      "redis-server, one process, `appendonly yes`, `appendfsync everysec`",
		guarantees: "no replica; the append-only file is fsynced once a second, so a crash of the machine can lose up to about a second of acknowledged writes",
		start:      startRedis,
	},
	{
		name:       "redis-cluster",
		label:      "Redis Cluster, 3 masters + 3 replicas (`redis-cli --cluster create --cluster-replicas 1`), each `appendonly yes`, `appendfsync everysec`; go-redis ClusterClient",
		guarantees: "each key on one master; replication to its replica is asynchronous, so writes acknowledged by a master can be lost when it fails over; AOF fsync once a second",
		start:      startRedisCluster,
	},
	{
		name:       "etcd",
		label:      "etcd 3.4 (Debian `etcd-server`), three members; go.etcd.io/etcd/client/v3",
		guarantees: "Raft: a write is acknowledged once a majority has it in its fsynced WAL (an fsync per commit batch); reads are linearizable (the default, a ReadIndex round through the leader); every request goes to the leader",
		start:      startEtcd,
	},
}

// ---------------------------------------------------------------- ringkv

var ringkvBin, ringkvBuild, ringkvVersion string

type rkNode struct {
	id, resp, http string
	p              *proc
}

// startRingkv starts nodes ringkv nodes at R=W=quorum, reached over mode:
// "http" (the token-aware Go client), "http-rr" (the Go client,
// round-robin), "resp" (go-redis, to the first node) or "resp-all"
// (go-redis, a client per node, keys spread over them by hash).
func startRingkv(dir string, nodes, quorum int, mode string) (*live, error) {
	rt := &live{version: ringkvVersion}
	seed := ""
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		respPort, httpPort, peerPort := freePorts(0), freePorts(0), freePorts(0, 1)
		n := &rkNode{id: id, resp: fmt.Sprintf("127.0.0.1:%d", respPort), http: fmt.Sprintf("127.0.0.1:%d", httpPort)}
		peer := fmt.Sprintf("127.0.0.1:%d", peerPort)
		args := []string{"server", "--node-id", id, "--data-dir", filepath.Join(dir, id), "--resp-addr", n.resp,
			"--http-addr", n.http, "--peer-addr", peer, "--replicas", strconv.Itoa(nodes),
			"--r", strconv.Itoa(quorum), "--w", strconv.Itoa(quorum), "--sync", "batch", "--log-level", "warn"}
		if seed != "" {
			args = append(args, "--join", seed)
		} else {
			seed = peer
		}
		n.p = &proc{name: "ringkv " + id, bin: ringkvBin, args: args, logPath: filepath.Join(dir, id+".log")}
		if err := n.p.start(); err != nil {
			rt.stop()
			return nil, err
		}
		rt.nodes = append(rt.nodes, n)
		if !waitHealthy(n) {
			rt.stop()
			return nil, fmt.Errorf("ringkv %s did not answer /healthz within 30 s: %s", id, tail(n.p.logPath, 10))
		}
	}
	// Every node sees every member normal and alive.
	ok := waitFor(60*time.Second, func() bool {
		for _, n := range rt.nodes {
			st, err := clusterOf(n.http)
			if err != nil || len(st.Members) != nodes {
				return false
			}
			for _, m := range st.Members {
				if m.State != "normal" || !m.Alive {
					return false
				}
			}
		}
		return true
	})
	if !ok {
		rt.stop()
		return nil, fmt.Errorf("ringkv cluster of %d did not converge within 60 s", nodes)
	}
	var level []string
	for _, n := range rt.nodes {
		level = append(level, n.http)
	}
	q := strconv.Itoa(quorum)
	if mode == "resp" {
		rt.newDriver = func(clients int) (driver, error) {
			c := redis.NewClient(&redis.Options{Addr: rt.nodes[0].resp, PoolSize: clients, MinIdleConns: min(clients, 64), Protocol: 2,
				ReadTimeout: opTimeout, WriteTimeout: opTimeout, DisableIdentity: true})
			return &redisDriver{c: c}, nil
		}
		return rt, nil
	}
	if mode == "resp-all" {
		rt.newDriver = func(clients int) (driver, error) {
			d := &spreadRedisDriver{}
			for _, n := range rt.nodes {
				d.cs = append(d.cs, redis.NewClient(&redis.Options{Addr: n.resp, PoolSize: clients, MinIdleConns: min(clients, 64), Protocol: 2,
					ReadTimeout: opTimeout, WriteTimeout: opTimeout, DisableIdentity: true}))
			}
			return d, nil
		}
		return rt, nil
	}
	rt.newDriver = func(clients int) (driver, error) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 4 * clients * nodes
		tr.MaxIdleConnsPerHost = 2 * clients
		c := client.New(level, client.Options{HTTPClient: &http.Client{Transport: tr}, TokenAware: mode == "http", Timeout: opTimeout, NoWriteRetry: !*flagRetry})
		if mode == "http" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := c.FetchRing(ctx); err != nil {
				return nil, err
			}
			if known, exact := c.RingKnown(); !known || !exact {
				log.Printf("warning: the token-aware client has no exact ring (known %v, exact %v)", known, exact)
			}
		}
		return &ringkvDriver{c: c, r: client.WithR(q), w: client.WithW(q), tr: tr}, nil
	}
	return rt, nil
}

var probe = &http.Client{Timeout: 2 * time.Second}

func waitHealthy(n *rkNode) bool {
	return waitFor(30*time.Second, func() bool {
		if !n.p.alive() {
			return false
		}
		resp, err := probe.Get("http://" + n.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func clusterOf(addr string) (*httpapi.ClusterStatus, error) {
	c := client.New([]string{addr}, client.Options{HTTPClient: probe})
	return c.Cluster(context.Background())
}

type ringkvDriver struct {
	c  *client.Client
	r  client.ReadOption
	w  client.WriteOption
	tr *http.Transport
}

func (d *ringkvDriver) Read(ctx context.Context, key string) (string, error) {
	res, err := d.c.Get(ctx, []byte(key), d.r)
	if errors.Is(err, client.ErrNotFound) {
		return res.Context, errMiss
	}
	if err != nil {
		return "", err
	}
	return res.Context, nil
}

func (d *ringkvDriver) Update(ctx context.Context, key string, value []byte, token string) error {
	_, err := d.c.Put(ctx, []byte(key), value, token, d.w)
	return err
}

func (d *ringkvDriver) Close() { d.tr.CloseIdleConnections() }

// ---------------------------------------------------------------- redis

type redisDriver struct{ c redis.UniversalClient }

func (d *redisDriver) Read(ctx context.Context, key string) (string, error) {
	_, err := d.c.Get(ctx, key).Result()
	if err == redis.Nil {
		return "", errMiss
	}
	return "", err
}

func (d *redisDriver) Update(ctx context.Context, key string, value []byte, _ string) error {
	return d.c.Set(ctx, key, value, 0).Err()
}

func (d *redisDriver) Close() { d.c.Close() }

// spreadRedisDriver sends each key to one of several servers, picked by
// the key's hash (FNV-1a): for a ringkv cluster whose every node is a
// replica of every key, so that the load spreads without forwarding.
type spreadRedisDriver struct{ cs []*redis.Client }

func (d *spreadRedisDriver) pick(key string) *redisDriver {
	h := fnv.New32a()
	h.Write([]byte(key))
	return &redisDriver{c: d.cs[h.Sum32()%uint32(len(d.cs))]}
}

func (d *spreadRedisDriver) Read(ctx context.Context, key string) (string, error) {
	return d.pick(key).Read(ctx, key)
}

func (d *spreadRedisDriver) Update(ctx context.Context, key string, value []byte, token string) error {
	return d.pick(key).Update(ctx, key, value, token)
}

func (d *spreadRedisDriver) Close() {
	for _, c := range d.cs {
		c.Close()
	}
}

func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "redis-server (version unknown)"
	}
	return strings.TrimSpace(string(out))
}

func startRedisProc(dir string, port int, cluster bool) (*proc, error) {
	d := filepath.Join(dir, strconv.Itoa(port))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", d, "--daemonize", "no",
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--logfile", filepath.Join(d, "redis.log")}
	if cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
	}
	p := &proc{name: "redis-server :" + strconv.Itoa(port), bin: "redis-server", args: args, logPath: filepath.Join(d, "stdout.log")}
	if err := p.start(); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer c.Close()
	if !waitFor(30*time.Second, func() bool { return p.alive() && c.Ping(context.Background()).Err() == nil }) {
		p.stop()
		return nil, fmt.Errorf("redis-server on %s did not answer PING: %s", addr, tail(filepath.Join(d, "redis.log"), 5))
	}
	return p, nil
}

func startRedis(dir string) (*live, error) {
	if err := ensure([]string{"redis-server", "redis-tools"}, "redis-server", "redis-cli"); err != nil {
		return nil, err
	}
	port := freePorts(0)
	p, err := startRedisProc(dir, port, false)
	if err != nil {
		return nil, err
	}
	rt := &live{procs: []*proc{p}, version: redisVersion()}
	rt.newDriver = func(clients int) (driver, error) {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), PoolSize: clients, MinIdleConns: min(clients, 64),
			Protocol: 2, ReadTimeout: opTimeout, WriteTimeout: opTimeout, DisableIdentity: true})
		return &redisDriver{c: c}, nil
	}
	return rt, nil
}

func startRedisCluster(dir string) (*live, error) {
	if err := ensure([]string{"redis-server", "redis-tools"}, "redis-server", "redis-cli"); err != nil {
		return nil, err
	}
	rt := &live{version: redisVersion()}
	var addrs []string
	for range 6 {
		port := freePorts(0, 10000) // the cluster bus listens on port + 10000
		p, err := startRedisProc(dir, port, true)
		if err != nil {
			rt.stop()
			return nil, err
		}
		rt.procs = append(rt.procs, p)
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		rt.stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	// Every node reports the cluster ok with all slots assigned, and the
	// replicas are linked to their masters.
	ok := waitFor(60*time.Second, func() bool {
		for _, a := range addrs {
			c := redis.NewClient(&redis.Options{Addr: a, DisableIdentity: true})
			info, err := c.ClusterInfo(context.Background()).Result()
			repl, err2 := c.Info(context.Background(), "replication").Result()
			c.Close()
			if err != nil || err2 != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				return false
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return false
			}
		}
		return true
	})
	if !ok {
		rt.stop()
		return nil, errors.New("Redis Cluster did not reach cluster_state:ok with its replicas linked within 60 s")
	}
	rt.newDriver = func(clients int) (driver, error) {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: clients, MinIdleConns: min(clients, 64),
			Protocol: 2, ReadTimeout: opTimeout, WriteTimeout: opTimeout, DisableIdentity: true})
		if err := c.ForEachShard(context.Background(), func(ctx context.Context, s *redis.Client) error { return s.Ping(ctx).Err() }); err != nil {
			c.Close()
			return nil, err
		}
		return &redisDriver{c: c}, nil
	}
	return rt, nil
}

// ---------------------------------------------------------------- etcd

func startEtcd(dir string) (*live, error) {
	if err := ensure([]string{"etcd-server"}, "etcd"); err != nil {
		return nil, err
	}
	ver := "etcd (version unknown)"
	if out, err := exec.Command("etcd", "--version").Output(); err == nil {
		ver = strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	}
	rt := &live{version: ver}
	type member struct{ name, client, peer string }
	var ms []member
	var initial []string
	for i := range 3 {
		m := member{name: fmt.Sprintf("e%d", i+1), client: fmt.Sprintf("http://127.0.0.1:%d", freePorts(0)), peer: fmt.Sprintf("http://127.0.0.1:%d", freePorts(0))}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	var endpoints []string
	for _, m := range ms {
		args := []string{"--name", m.name, "--data-dir", filepath.Join(dir, m.name),
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "ycsb", "--logger", "zap", "--log-level", "warn"}
		p := &proc{name: "etcd " + m.name, bin: "etcd", args: args, logPath: filepath.Join(dir, m.name+".log")}
		if err := p.start(); err != nil {
			rt.stop()
			return nil, err
		}
		rt.procs = append(rt.procs, p)
		endpoints = append(endpoints, m.client)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		rt.stop()
		return nil, err
	}
	defer c.Close()
	var lastErr error
	ok := waitFor(60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, lastErr = c.Put(ctx, "ycsb-probe", "x")
		if lastErr != nil {
			return false
		}
		for _, e := range endpoints {
			st, err := c.Status(ctx, e)
			if err != nil || st.Leader == 0 {
				lastErr = err
				return false
			}
			if ver == "etcd (version unknown)" {
				ver = "etcd " + st.Version
			}
		}
		return true
	})
	if !ok {
		rt.stop()
		return nil, fmt.Errorf("etcd cluster not ready within 60 s: %v; %s", lastErr, tail(rt.procs[0].logPath, 5))
	}
	rt.version = ver
	rt.newDriver = func(clients int) (driver, error) {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		return &etcdDriver{c: c}, nil
	}
	return rt, nil
}

type etcdDriver struct{ c *clientv3.Client }

func (d *etcdDriver) Read(ctx context.Context, key string) (string, error) {
	r, err := d.c.Get(ctx, key)
	if err != nil {
		return "", err
	}
	if len(r.Kvs) == 0 {
		return "", errMiss
	}
	return "", nil
}

func (d *etcdDriver) Update(ctx context.Context, key string, value []byte, _ string) error {
	_, err := d.c.Put(ctx, key, string(value))
	return err
}

func (d *etcdDriver) Close() { d.c.Close() }
