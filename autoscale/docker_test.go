package autoscale

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeEngine is the part of the Docker Engine API the orchestrator uses,
// on a unix socket: containers are kept in memory, the calls recorded.
type fakeEngine struct {
	t       *testing.T
	version string // the daemon's API-Version
	mu      sync.Mutex
	calls   []string
	created []map[string]any
	conts   map[string]*fakeContainer
	inUse   map[string]bool // addresses taken on the network
	failIP  map[string]bool // addresses whose start fails as taken
}

type fakeContainer struct {
	id, name, ip string
	labels       map[string]string
	running      bool
	networks     []string
}

func newFakeEngine(t *testing.T, version string) (*fakeEngine, string) {
	e := &fakeEngine{t: t, version: version, conts: map[string]*fakeContainer{},
		inUse: map[string]bool{"10.9.0.11": true}, failIP: map[string]bool{}}
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(e)
	s.Listener.Close()
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return e, sock
}

func (e *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/_ping" {
		w.Header().Set("API-Version", e.version)
		io.WriteString(w, "OK")
		return
	}
	prefix := "/v" + min(e.version, dockerAPIVersion)
	path, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		http.Error(w, `{"message":"wrong version in `+r.URL.Path+`"}`, http.StatusBadRequest)
		return
	}
	fail := func(code int, msg string) {
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"message": msg})
	}
	switch {
	case r.Method == http.MethodGet && path == "/containers/json":
		var f map[string][]string
		json.Unmarshal([]byte(r.URL.Query().Get("filters")), &f)
		var out []map[string]any
	next:
		for _, c := range e.conts {
			for _, l := range f["label"] {
				k, v, _ := strings.Cut(l, "=")
				if c.labels[k] != v {
					continue next
				}
			}
			state := "created"
			if c.running {
				state = "running"
			}
			out = append(out, map[string]any{"Id": c.id, "Names": []string{"/" + c.name}, "Labels": c.labels,
				"Created": 1700000000, "State": state,
				"Ports": []map[string]any{{"IP": "127.0.0.1", "PrivatePort": 8080, "PublicPort": 49153, "Type": "tcp"},
					{"IP": "127.0.0.1", "PrivatePort": 6379, "PublicPort": 49154, "Type": "tcp"}}})
		}
		json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodGet && path == "/networks/ringnet":
		cs := map[string]any{}
		for ip := range e.inUse {
			cs["c-"+ip] = map[string]string{"IPv4Address": ip + "/24"}
		}
		json.NewEncoder(w).Encode(map[string]any{"IPAM": map[string]any{"Config": []map[string]string{{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}}},
			"Containers": cs})
	case r.Method == http.MethodPost && path == "/containers/create":
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		name := r.URL.Query().Get("name")
		for _, c := range e.conts {
			if c.name == name {
				fail(http.StatusConflict, "name in use")
				return
			}
		}
		e.created = append(e.created, body)
		ep := body["NetworkingConfig"].(map[string]any)["EndpointsConfig"].(map[string]any)["ringnet"].(map[string]any)
		c := &fakeContainer{id: fmt.Sprintf("id%d", len(e.created)), name: name, labels: map[string]string{}, networks: []string{"ringnet"}}
		if ipam, ok := ep["IPAMConfig"].(map[string]any); ok {
			c.ip = ipam["IPv4Address"].(string)
		}
		for k, v := range body["Labels"].(map[string]any) {
			c.labels[k] = v.(string)
		}
		e.conts[c.id] = c
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"Id": c.id})
	case r.Method == http.MethodPost && strings.HasPrefix(path, "/networks/"):
		var body map[string]string
		json.NewDecoder(r.Body).Decode(&body)
		c := e.conts[body["Container"]]
		c.networks = append(c.networks, strings.Split(path, "/")[2])
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/start"):
		c := e.conts[strings.Split(path, "/")[2]]
		if e.failIP[c.ip] || e.inUse[c.ip] {
			fail(http.StatusInternalServerError, "Address already in use")
			return
		}
		c.running = true
		e.inUse[c.ip] = true
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/stop"):
		c := e.conts[strings.Split(path, "/")[2]]
		if !c.running {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.URL.Query().Get("t") == "" {
			fail(http.StatusBadRequest, "no t")
			return
		}
		c.running = false
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete && strings.HasPrefix(path, "/containers/"):
		id := strings.Split(path, "/")[2]
		c, ok := e.conts[id]
		if !ok {
			fail(http.StatusNotFound, "no such container")
			return
		}
		delete(e.inUse, c.ip)
		delete(e.conts, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(http.StatusNotFound, "no route "+r.Method+" "+path)
	}
}

func TestDockerAddListRemove(t *testing.T) {
	e, sock := newFakeEngine(t, "1.43")
	d := &Docker{Socket: sock, Image: "ringkv:test", Network: "ringnet", ExtraNetworks: []string{"clients"},
		Prefix: "rkv", Join: []string{"10.9.0.11:7000"}, Args: []string{"--timeout", "1s"}, PublishHost: "127.0.0.1",
		Reserved: func(context.Context) ([]string, error) { return []string{"n1", "rkv-4"}, nil }}
	ctx := context.Background()
	e.failIP["10.9.0.254"] = true // taken by someone else between our look and our start
	id, err := d.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// rkv-4 has left the cluster: never given again.
	if id != "rkv-5" {
		t.Fatalf("node %q, want rkv-5", id)
	}
	last := e.created[len(e.created)-1]
	args := fmt.Sprint(last["Cmd"])
	if want := "[--node-id rkv-5 --peer-addr 10.9.0.253:7000 --join 10.9.0.11:7000 --timeout 1s]"; args != want {
		t.Fatalf("args %s, want %s", args, want)
	}
	bind := last["HostConfig"].(map[string]any)["PortBindings"].(map[string]any)["8080/tcp"]
	if fmt.Sprint(bind) != "[map[HostIp:127.0.0.1 HostPort:]]" {
		t.Fatalf("port bindings %v", bind)
	}
	if len(e.conts) != 1 {
		t.Fatalf("the failed attempt's container was not removed: %d containers", len(e.conts))
	}
	for _, c := range e.conts {
		if fmt.Sprint(c.networks) != "[ringnet clients]" || !c.running {
			t.Fatalf("container %+v", c)
		}
	}
	for _, c := range e.calls {
		if c != "GET /_ping" && !strings.HasPrefix(c, "/v1.41/") && !strings.Contains(c, " /v1.41/") {
			t.Fatalf("call %q not at the negotiated version 1.41", c)
		}
	}
	nodes, err := d.List(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "rkv-5" || !nodes[0].Running ||
		nodes[0].HTTPAddr != "127.0.0.1:49153" || nodes[0].RESPAddr != "127.0.0.1:49154" {
		t.Fatalf("list: %+v %v", nodes, err)
	}
	id2, err := d.AddNode(ctx)
	if err != nil || id2 != "rkv-6" {
		t.Fatalf("second node: %q %v", id2, err)
	}
	if err := d.RemoveNode(ctx, "rkv-5"); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveNode(ctx, "rkv-5"); err != nil {
		t.Fatalf("removing a node already gone: %v", err)
	}
	if nodes, _ := d.List(ctx); len(nodes) != 1 || nodes[0].ID != "rkv-6" {
		t.Fatalf("after removing rkv-5: %+v", nodes)
	}
}

// Against an older daemon the client speaks the daemon's version.
func TestDockerNegotiatesAnOlderVersion(t *testing.T) {
	e, sock := newFakeEngine(t, "1.40")
	d := &Docker{Socket: sock, Prefix: "rkv"}
	if _, err := d.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.calls[len(e.calls)-1]; got != "GET /v1.40/containers/json" {
		t.Fatalf("call %q", got)
	}
	_, sock = newFakeEngine(t, "1.24")
	d = &Docker{Socket: sock, Prefix: "rkv"}
	if _, err := d.List(context.Background()); err == nil || !strings.Contains(err.Error(), "older than 1.25") {
		t.Fatalf("a 1.24 daemon: %v", err)
	}
}

func TestDockerByName(t *testing.T) {
	e, sock := newFakeEngine(t, "1.41")
	d := &Docker{Socket: sock, Image: "ringkv:test", Network: "ringnet", Prefix: "rkv", Join: []string{"seed:7000"}, PeerByName: true}
	if _, err := d.AddNode(context.Background()); err != nil {
		t.Fatal(err)
	}
	if args := fmt.Sprint(e.created[0]["Cmd"]); !strings.Contains(args, "--peer-addr rkv-1:7000") {
		t.Fatalf("args %s", args)
	}
	for _, c := range e.calls {
		if strings.Contains(c, "/networks/") {
			t.Fatalf("looked for an address by name: %s", c)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{{"1.40", "1.41", true}, {"1.41", "1.41", false}, {"1.9", "1.41", true}, {"2.0", "1.41", false}} {
		if versionLess(c.a, c.b) != c.less {
			t.Errorf("versionLess(%s, %s) = %v", c.a, c.b, !c.less)
		}
	}
}
