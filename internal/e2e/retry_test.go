package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/client"
)

// answerLost is a proxy in front of a node's HTTP API that forwards each
// write, lets the node apply it, and then closes the client's connection
// without the answer: the client cannot know the write's outcome.
func answerLost(t *testing.T, target string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			t.Errorf("proxy: %v", err)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body) // applied; the answer is lost
			resp.Body.Close()
		}
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// stripWriteIDs is a client transport that drops the write ID header: a
// client from before write IDs, the canary's planted bug.
type stripWriteIDs struct{ next http.RoundTripper }

func (s stripWriteIDs) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del(httpapi.HeaderWriteID)
	return s.next.RoundTrip(r)
}

// A write with a read's context (an increment's shape) whose answer is lost
// after the node applied it: the Go client, with its defaults, sends it
// again to the next node under the same write ID, and the cluster of
// ringkv processes stores it once. The canary sends the same schedule
// without the ID, and the check must find the write stored twice.
func TestRetriedWriteThroughALostAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	nodes := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	direct := client.New([]string{nodes[2].http}, client.Options{})
	lossy := answerLost(t, nodes[0].http)

	for _, named := range []bool{true, false} {
		key := []byte("retried-named")
		var tr http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
		if !named {
			key = []byte("retried-canary")
			tr = stripWriteIDs{tr}
		}
		if _, err := direct.Put(ctx, key, []byte("old"), "", client.WithW("ALL")); err != nil {
			t.Fatal(err)
		}
		read, err := direct.Get(ctx, key, client.WithR("ALL"))
		if err != nil {
			t.Fatal(err)
		}
		// Round-robin: the first call goes to the lossy proxy, its retry
		// to node 2.
		c := client.New([]string{lossy.URL, nodes[1].http}, client.Options{HTTPClient: &http.Client{Transport: tr}, Timeout: 5 * time.Second})
		if _, err := c.Put(ctx, key, []byte("new"), read.Context); err != nil {
			t.Fatalf("named %v: the retried write failed: %v", named, err)
		}
		var values []string
		waitFor(t, 20*time.Second, "the replicas agree on the retried key", func() bool {
			res, err := direct.Get(ctx, key, client.WithR("ALL")) // R=ALL: read repair
			if err != nil {
				return false
			}
			values = values[:0]
			for _, s := range res.Siblings {
				values = append(values, string(s.Value))
			}
			return replicasAgreeOnHTTP(ctx, nodes, key)
		})
		doubled := len(values) == 2 && values[0] == "new" && values[1] == "new"
		switch {
		case named && (len(values) != 1 || values[0] != "new"):
			t.Fatalf("with a write ID: %q, want the write once", values)
		case !named && !doubled:
			t.Fatalf("canary: without a write ID the write was not stored twice: %q", values)
		}
		t.Logf("named %v: siblings %q", named, values)
	}
}

// replicasAgreeOnHTTP reports whether every node answers a read at R=1 of
// key with the same context (each node's own copy, as a replica of every
// key in a three-node cluster).
func replicasAgreeOnHTTP(ctx context.Context, nodes []*node, key []byte) bool {
	var first string
	for i, n := range nodes {
		res, err := client.New([]string{n.http}, client.Options{}).Get(ctx, key, client.WithR("ONE"))
		if err != nil {
			return false
		}
		if i == 0 {
			first = res.Context
		} else if res.Context != first {
			return false
		}
	}
	return true
}
