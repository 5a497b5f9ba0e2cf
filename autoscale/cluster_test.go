package autoscale

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

func TestReachableHTTPAddr(t *testing.T) {
	for _, c := range []struct{ http, peer, want string }{
		{"127.0.0.1:8081", "127.0.0.1:7001", "127.0.0.1:8081"},
		{"0.0.0.0:8080", "10.1.2.3:7000", "10.1.2.3:8080"},
		{"[::]:8080", "10.1.2.3:7000", "10.1.2.3:8080"},
		{":8080", "node-4:7000", "node-4:8080"},
		{"0.0.0.0:8080", "", "0.0.0.0:8080"},
	} {
		if got := ReachableHTTPAddr(Member{HTTPAddr: c.http, PeerAddr: c.peer}); got != c.want {
			t.Errorf("http %q peer %q: %q, want %q", c.http, c.peer, got, c.want)
		}
	}
}

// fakeNode serves /v1/cluster with the given members and load, and
// /v1/decommission with the given status.
func fakeNode(t *testing.T, id string, members func() []httpapi.MemberStatus, rps float64, decomm int) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/cluster":
			json.NewEncoder(w).Encode(httpapi.ClusterStatus{NodeID: id, Members: members(),
				Load: &httpapi.LoadStatus{RequestsPerSecond: rps, P99Ms: 2.5, WindowSeconds: 10}})
		case "/v1/decommission":
			if r.Method != http.MethodPost {
				t.Errorf("decommission by %s", r.Method)
			}
			w.WriteHeader(decomm)
			if decomm == http.StatusAccepted {
				json.NewEncoder(w).Encode(map[string]string{"node": r.URL.Query().Get("node"), "state": "leaving"})
			} else {
				w.Write([]byte("no: " + r.URL.Query().Get("node") + "\n"))
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestHTTPClusterMembersLoadAndDecommission(t *testing.T) {
	var n1, n2 *httptest.Server
	members := func() []httpapi.MemberStatus {
		return []httpapi.MemberStatus{
			{ID: "n1", State: "normal", Alive: true, HTTPAddr: strings.TrimPrefix(n1.URL, "http://"), PeerAddr: "10.0.0.1:7000"},
			{ID: "n2", State: "normal", Alive: true, HTTPAddr: strings.TrimPrefix(n2.URL, "http://"), PeerAddr: "10.0.0.2:7000"},
			{ID: "n3", State: "left", HTTPAddr: "0.0.0.0:8080", PeerAddr: "10.0.0.3:7000"},
		}
	}
	n1 = fakeNode(t, "n1", members, 12, http.StatusAccepted)
	n2 = fakeNode(t, "n2", members, 34, http.StatusConflict)
	c := &HTTPCluster{Addrs: []string{"127.0.0.1:1", strings.TrimPrefix(n1.URL, "http://")}}
	ctx := context.Background()
	ms, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].ID != "n1" || ms[2].State != "left" || ms[2].Alive {
		t.Fatalf("members %+v", ms)
	}
	l, err := c.Load(ctx, ms[1])
	if err != nil || l.ID != "n2" || l.RPS != 34 || l.P99 != 2500*time.Microsecond {
		t.Fatalf("load of n2: %+v %v", l, err)
	}
	// A member answering under another ID is not its load.
	if _, err := c.Load(ctx, Member{ID: "n9", HTTPAddr: ms[0].HTTPAddr}); err == nil || !strings.Contains(err.Error(), "n1 answered") {
		t.Fatalf("load at the wrong node: %v", err)
	}
	if err := c.Decommission(ctx, "n2"); err != nil {
		t.Fatalf("decommission through n1: %v", err)
	}
	// Once the addresses given are gone, the learned ones answer.
	n1.Close()
	c2 := &HTTPCluster{Addrs: []string{strings.TrimPrefix(n2.URL, "http://")}}
	if _, err := c2.Members(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Decommission(ctx, "n1"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no: n1") {
		t.Fatalf("a 409: %v", err)
	}
	c2.Addrs = []string{"127.0.0.1:1"}
	if _, err := c2.Members(ctx); err != nil {
		t.Fatalf("members through the learned n2: %v", err)
	}
}

func TestHTTPClusterUnknownNode(t *testing.T) {
	n1 := fakeNode(t, "n1", func() []httpapi.MemberStatus { return nil }, 0, http.StatusNotFound)
	c := &HTTPCluster{Addrs: []string{strings.TrimPrefix(n1.URL, "http://")}}
	if err := c.Decommission(context.Background(), "zz"); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("a 404: %v", err)
	}
	c.Addrs = []string{"127.0.0.1:1"}
	if _, err := c.Members(context.Background()); err == nil || !strings.Contains(err.Error(), "no node answered") {
		t.Fatalf("nobody up: %v", err)
	}
}
