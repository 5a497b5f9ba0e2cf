package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// The largest object a replica stores, with the largest key and a
// message's own bytes, fits in one peer frame of the transport's default
// size, both as a request (replicate) and as a reply (read): a key a
// replica accepted can always be replicated and read remotely.
func TestMaxObjectFitsAPeerFrame(t *testing.T) {
	const messageOverhead = 64 // uvarint lengths, kind, frame header: well under
	size := version.MaxObjectSize + storage.MaxKeySize + messageOverhead
	srv, err := transport.Listen("127.0.0.1:0", transport.HandlerFunc(func(_ context.Context, _ string, _ uint8, payload []byte) ([]byte, error) {
		return payload, nil // a read answers with the object
	}), transport.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := transport.NewClient("test", transport.Options{})
	defer c.Close()
	payload := bytes.Repeat([]byte{'o'}, size)
	reply, err := c.Call(context.Background(), srv.Addr(), 1, payload)
	if err != nil {
		t.Fatalf("a %d-byte message (MaxObjectSize %d + key %d + %d) does not fit the default peer frame: %v",
			size, version.MaxObjectSize, storage.MaxKeySize, messageOverhead, err)
	}
	if len(reply) != size {
		t.Fatalf("reply of %d bytes, want %d", len(reply), size)
	}
	if maxClientValueSize >= version.MaxObjectSize {
		t.Fatal("a client value limit at MaxObjectSize leaves no room for the object's context")
	}
}

func TestStartRefusesNodeIDWithTilde(t *testing.T) {
	_, err := Start(Config{NodeID: "n~1", DataDir: t.TempDir(), PeerAddr: freePeerAddr(t), Replicas: 1})
	if err == nil || !strings.Contains(err.Error(), "--node-id") || !strings.Contains(err.Error(), "~") {
		t.Fatalf("Start with node ID n~1: %v", err)
	}
	_, err = Start(Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: freePeerAddr(t), Replicas: 1, MaxValueSize: version.MaxObjectSize})
	if err == nil || !strings.Contains(err.Error(), "--max-value-size") {
		t.Fatalf("Start with a value limit of MaxObjectSize: %v", err)
	}
	for _, chance := range []float64{1.5, math.NaN()} {
		_, err = Start(Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: freePeerAddr(t), Replicas: 1, ReadRepairChance: chance})
		if err == nil || !strings.Contains(err.Error(), "--read-repair-chance") {
			t.Fatalf("Start with a read repair chance of %v: %v", chance, err)
		}
	}
}

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logSink) find(sub string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return s
		}
	}
	return ""
}

// A node keeps its incarnation across a clean restart and says so; the
// HTTP API shows it in sibling dots. A forged context and siblings too
// large for one object get clear errors over both APIs: HTTP 400 and 413
// with a JSON body, Redis an ERR line saying what to do.
func TestIncarnationAndLimitErrorsOnBothAPIs(t *testing.T) {
	dir, peer := t.TempDir(), freePeerAddr(t)
	logs := &logSink{}
	cfg := Config{NodeID: "n1", DataDir: dir, PeerAddr: peer, RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Replicas: 1, Logf: logs.logf}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if logs.find("new incarnation") == "" || logs.find("new data directory") == "" {
		t.Fatalf("start on a new directory logged no new incarnation: %q", logs.lines)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	logs = &logSink{}
	cfg.Logf = logs.logf
	if s, err = Start(cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if logs.find("kept after a clean shutdown") == "" {
		t.Fatalf("clean restart: %q", logs.lines)
	}

	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: s.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	base := "http://" + s.HTTPAddr() + "/v1/kv/"
	httpDo := func(method, key, token string, body []byte) (int, []byte, http.Header) {
		req, _ := http.NewRequest(method, base+key, bytes.NewReader(body))
		if token != "" {
			req.Header.Set(httpapi.HeaderContext, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header
	}

	if err := rc.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	code, b, _ := httpDo("GET", "k", "", nil)
	var rr httpapi.ReadResponse
	if err := json.Unmarshal(b, &rr); code != 200 || err != nil || len(rr.Siblings) != 1 {
		t.Fatalf("GET k: %d %s", code, b)
	}
	if d := rr.Siblings[0].Dot; d.Node != "n1" || d.Incarnation == 0 || d.Counter != 1 {
		t.Fatalf("dot %+v", d)
	}

	forged := version.ClockToString(version.Clock{"n1": 1, "intruder~1": 1})
	err = rc.Do(ctx, "RINGKV.PUT", "k", forged, "v2").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "ERR ") || !strings.Contains(err.Error(), "read the key again") {
		t.Fatalf("RINGKV.PUT with a forged context: %v", err)
	}
	code, b, _ = httpDo("PUT", "k", forged, []byte("v2"))
	if code != 400 || !strings.Contains(string(b), "read the key again") {
		t.Fatalf("HTTP PUT with a forged context: %d %s", code, b)
	}

	// Writes with an empty context see nothing: each adds a sibling.
	value := strings.Repeat("x", 1<<20-100)
	err = nil
	n := 0
	for ; n < 12 && err == nil; n++ {
		err = rc.Do(ctx, "RINGKV.PUT", "big", "", value).Err()
	}
	if err == nil || !strings.HasPrefix(err.Error(), "ERR ") || !strings.Contains(err.Error(), "siblings totalling") || !strings.Contains(err.Error(), "RINGKV.SIBLINGS") {
		t.Fatalf("RINGKV.PUT number %d: %v", n, err)
	}
	// Over HTTP: each PUT with the first write's context supersedes that
	// write only, so each adds a sibling.
	code, b, hdr := httpDo("PUT", "big2", "", []byte(value))
	first := hdr.Get(httpapi.HeaderContext)
	for n = 0; n < 12 && (code == 200 || code == 204); n++ {
		code, b, _ = httpDo("PUT", "big2", first, []byte(value))
	}
	if code != 413 || !strings.Contains(string(b), "siblings totalling") || !strings.Contains(string(b), "resolve the siblings") {
		t.Fatalf("HTTP PUT number %d adding a sibling: %d %s", n, code, b)
	}
	if err := rc.Set(ctx, "big", "small", 0).Err(); err != nil {
		t.Fatalf("SET resolving the siblings: %v", err)
	}
}
