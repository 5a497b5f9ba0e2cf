package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

func startSingle(t *testing.T, dataDir string) *Server {
	t.Helper()
	s, err := Start(Config{NodeID: "n1", DataDir: dataDir, PeerAddr: freePeerAddr(t),
		RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Replicas: 1,
		// Small memtables: the snapshot has many tables, and flushes run
		// while it is taken.
		MemTableSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func postSnapshot(t *testing.T, s *Server, dir string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+s.HTTPAddr()+"/v1/snapshot?dir="+url.QueryEscape(dir), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A node with a few thousand keys takes a snapshot over HTTP while a
// writer keeps writing; the snapshot restored into an empty data directory
// starts a node (the original and its data gone) that holds every key
// written before the snapshot, under a new incarnation.
func TestSnapshotAndRestore(t *testing.T) {
	ctx := context.Background()
	origDir := t.TempDir()
	s := startSingle(t, origDir)
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	rc := redis.NewClient(&redis.Options{Addr: s.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	const n = 4000
	value := func(i int) string { return fmt.Sprintf("value-%d-%s", i, strings.Repeat("v", i%100)) }
	for base := 0; base < n; base += 200 {
		pipe := rc.Pipeline()
		for i := base; i < base+200; i++ {
			pipe.Set(ctx, fmt.Sprintf("key-%d", i), value(i), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 10 {
		if err := rc.Del(ctx, fmt.Sprintf("key-%d", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}

	// A writer keeps writing through the snapshot.
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		wc := redis.NewClient(&redis.Options{Addr: s.RespAddr(), MaxRetries: -1})
		defer wc.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := wc.Set(ctx, fmt.Sprintf("late-%d", i), value(i), 0).Err(); err != nil {
				writeErr = err
				return
			}
			acked.Store(int64(i + 1))
		}
	}()
	for acked.Load() < 200 && writeErr == nil {
		runtime.Gosched()
	}
	before := int(acked.Load())
	snapDir := filepath.Join(t.TempDir(), "snap")
	code, body := postSnapshot(t, s, snapDir)
	after := int(acked.Load())
	close(stop)
	wg.Wait()
	if code != http.StatusOK {
		t.Fatalf("POST /v1/snapshot: %d %s", code, body)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	var info SnapshotInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("snapshot answer %q: %v", body, err)
	}
	if info.Dir != snapDir || info.NodeID != "n1" || info.Tables == 0 || info.Bytes == 0 || info.Incarnation != s.store.Incarnation() || info.Seconds <= 0 {
		t.Fatalf("snapshot answer: %+v", info)
	}
	t.Logf("snapshot: %d tables, %d bytes (%d linked, %d copied) in %.3fs; %d late writes acknowledged before it, %d when it returned",
		info.Tables, info.Bytes, info.Linked, info.Copied, info.Seconds, before, after)

	// Refusals: 400 with a reason, nothing written.
	for _, c := range []struct{ dir, want string }{
		{"relative/dir", "absolute"},
		{snapDir, "not empty"},
		{origDir, "data directory"},
	} {
		code, body := postSnapshot(t, s, c.dir)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("snapshot into %q: %d %q, want 400 mentioning %q", c.dir, code, body, c.want)
		}
	}
	if code, body := postSnapshot(t, s, ""); code != http.StatusBadRequest {
		t.Errorf("snapshot without a directory: %d %s", code, body)
	}
	resp, err := http.Get("http://" + s.HTTPAddr() + "/v1/snapshot?dir=" + url.QueryEscape(filepath.Join(t.TempDir(), "x")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/snapshot: %d", resp.StatusCode)
	}
	// A JSON body names the directory too.
	jsonDir := filepath.Join(t.TempDir(), "bodysnap")
	resp, err = http.Post("http://"+s.HTTPAddr()+"/v1/snapshot", "application/json", strings.NewReader(fmt.Sprintf(`{"dir": %q}`, jsonDir)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST /v1/snapshot with a JSON body: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(jsonDir, "CURRENT")); err != nil {
		t.Errorf("snapshot named by a JSON body: %v", err)
	}

	// The original node goes away with its data.
	origInc := s.store.Incarnation()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := os.RemoveAll(origDir); err != nil {
		t.Fatal(err)
	}

	// A restore refuses a non-empty target and leaves it alone.
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "something"), []byte("x"), 0o644)
	if _, err := Restore(snapDir, busy, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty directory: %v", err)
	}
	if names, _ := os.ReadDir(busy); len(names) != 1 {
		t.Fatalf("a refused restore changed the directory: %v", names)
	}
	// Nor a directory that is no snapshot.
	if _, err := Restore(t.TempDir(), filepath.Join(t.TempDir(), "d"), RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not a snapshot") {
		t.Fatalf("restore from an empty directory: %v", err)
	}

	newDir := filepath.Join(t.TempDir(), "restored")
	res, err := Restore(snapDir, newDir, RestoreOptions{Ring: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tables != info.Tables || res.OldIncarnation != origInc || res.Incarnation == origInc || res.Incarnation == 0 || !res.RingState || res.Snapshot.NodeID != "n1" {
		t.Fatalf("restore: %+v (snapshot %+v, original incarnation %d)", res, info, origInc)
	}
	// A second restore of the same snapshot gets an incarnation of its own.
	res2, err := Restore(snapDir, filepath.Join(t.TempDir(), "restored2"), RestoreOptions{Copy: true})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Incarnation == res.Incarnation || res2.Incarnation == origInc || res2.Linked != 0 || res2.Copied != res2.Tables || res2.RingState {
		t.Fatalf("second restore: %+v; first %+v", res2, res)
	}
	if b, err := os.ReadFile(filepath.Join(res.DataDir, formatFileName)); err != nil || !strings.HasPrefix(string(b), formatPrefix) || info.DataFormat != dataFormat {
		t.Fatalf("restored data directory's format: %q %v (snapshot of format %d)", b, err, info.DataFormat)
	}
	if _, err := os.Stat(filepath.Join(res2.DataDir, ringStateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("restore without Ring wrote ring.json: %v", err)
	}

	r := startSingle(t, newDir)
	defer r.Close()
	if got := r.store.Incarnation(); got != res.Incarnation || got == origInc {
		t.Fatalf("restored node's incarnation %d: restore minted %d, the original had %d", got, res.Incarnation, origInc)
	}
	if why := r.store.Minted(); why != "" {
		t.Fatalf("restored node minted another incarnation at start: %s", why)
	}
	rr := redis.NewClient(&redis.Options{Addr: r.RespAddr(), MaxRetries: -1})
	defer rr.Close()
	for i := range n {
		got, err := rr.Get(ctx, fmt.Sprintf("key-%d", i)).Result()
		if i%10 == 0 {
			if !errors.Is(err, redis.Nil) {
				t.Fatalf("restored node: deleted key-%d: %q %v", i, got, err)
			}
			continue
		}
		if err != nil || got != value(i) {
			t.Fatalf("restored node: key-%d: %q %v", i, got, err)
		}
	}
	held := 0
	for i := range after {
		got, err := rr.Get(ctx, fmt.Sprintf("late-%d", i)).Result()
		if err == nil && got == value(i) {
			held++
			continue
		}
		if i < before {
			t.Fatalf("restored node: late-%d, acknowledged before the snapshot: %q %v", i, got, err)
		}
	}
	t.Logf("restored node holds %d of the %d late writes acknowledged when the snapshot returned (%d before it began)", held, after, before)
	// It takes writes, stamped with its new incarnation.
	if err := rr.Set(ctx, "after-restore", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
}
