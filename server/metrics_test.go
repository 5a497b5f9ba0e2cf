package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/metrics"
	"github.com/ringkv/ringkv/ring"
)

// TestMetricsEndpoint: a three-node cluster (N=2) serves Redis and HTTP
// requests at known levels; node a's /metrics then counts exactly those
// requests by interface, operation and level, shows the replication and
// forwarding they caused, the members by state, the Redis commands and
// the engine's writes, and passes promtool's lint where promtool is
// installed.
func TestMetricsEndpoint(t *testing.T) {
	start := func(id string, join ...string) *Server {
		s, err := Start(Config{NodeID: id, DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
			RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Replicas: 2, Partitions: 64, Join: join})
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := start("a")
	start("b", a.cfg.PeerAddr)
	start("c", a.cfg.PeerAddr)
	waitFor(t, "three normal members alive on a", func() bool {
		n := 0
		for _, m := range a.Membership().Members() {
			if m.Alive && m.State == ring.StateNormal {
				n++
			}
		}
		return n == 3
	})

	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: a.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	const sets, gets, puts = 50, 40, 10
	for i := range sets {
		if err := rc.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatalf("SET k%d: %v", i, err)
		}
	}
	for i := range gets {
		if err := rc.Get(ctx, fmt.Sprintf("k%d", i)).Err(); err != nil {
			t.Fatalf("GET k%d: %v", i, err)
		}
	}
	base := "http://" + a.HTTPAddr()
	for i := range puts {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/h%d?w=one", base, i), strings.NewReader("v"))
		httpDo(t, req, http.StatusNoContent, http.StatusOK)
		get, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/kv/h%d?r=all", base, i), nil)
		httpDo(t, get, http.StatusOK)
	}
	// A GET at a level over N fails: counted, as a failure.
	get, _ := http.NewRequest(http.MethodGet, base+"/v1/kv/k1?r=3", nil)
	resp, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	text := scrape(t, base+"/metrics")
	values := parseMetrics(t, text)
	want := map[string]float64{
		`ringkv_request_duration_seconds_count{api="resp",level="quorum",op="put"}`: sets,
		`ringkv_request_duration_seconds_count{api="resp",level="quorum",op="get"}`: gets,
		`ringkv_request_duration_seconds_count{api="http",level="one",op="put"}`:    puts,
		`ringkv_request_duration_seconds_count{api="http",level="all",op="get"}`:    puts,
		`ringkv_request_duration_seconds_count{api="http",level="3",op="get"}`:      1,
		`ringkv_request_failures_total{api="http",level="3",op="get"}`:              1,
		`ringkv_resp_commands_total{command="set"}`:                                 sets,
		`ringkv_resp_commands_total{command="get"}`:                                 gets,
		`ringkv_members{alive="true",state="normal"}`:                               3,
		`ringkv_members{alive="false",state="normal"}`:                              0,
		`ringkv_node_info{dc="",node_id="a",rack=""}`:                               1,
	}
	for name, v := range want {
		if got, ok := values[name]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
	if _, ok := values[`ringkv_request_failures_total{api="resp",level="quorum",op="put"}`]; !ok {
		t.Errorf("no failure counter beside the put histogram")
	}
	positive := []string{
		`ringkv_replica_writes_total{outcome="ack"}`,
		`ringkv_forwarded_writes_total`,
		`ringkv_read_siblings_count`,
		`ringkv_engine_writes_total`,
		`ringkv_engine_wal_sync_duration_seconds_count`,
		`ringkv_resp_connections_total`,
		`ringkv_antientropy_trees{state="total"}`,
		`ringkv_request_duration_seconds_sum{api="resp",level="quorum",op="put"}`,
	}
	for _, name := range positive {
		if values[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, values[name])
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("promtool not installed (Debian package prometheus): the lint of /metrics is skipped")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("promtool check metrics: ok (%d bytes of metrics)", len(text))
}

func httpDo(t *testing.T, req *http.Request, want ...int) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range want {
		if resp.StatusCode == w {
			return
		}
	}
	t.Fatalf("%s %s: %s %s", req.Method, req.URL, resp.Status, body)
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q, want text/plain", url, ct)
	}
	return string(body)
}

func parseMetrics(t *testing.T, text string) map[string]float64 {
	t.Helper()
	values, err := metrics.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return values
}
