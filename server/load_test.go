package server

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

// Every latency falls in a bin whose upper bound is above it and at most
// 25% (or 1 µs) over it, and bins grow with the latency.
func TestLoadBinsBoundTheLatencyFromAbove(t *testing.T) {
	prev := 0
	for us := uint64(0); us < 1<<25; us = us*9/8 + 1 {
		i := loadBin(time.Duration(us) * time.Microsecond)
		if i < prev {
			t.Fatalf("%d µs: bin %d after bin %d", us, i, prev)
		}
		prev = i
		up := loadBinUpper(i)
		if up <= us || float64(up) > float64(us)*1.25+1 {
			t.Fatalf("%d µs in bin %d, whose upper bound is %d µs", us, i, up)
		}
	}
	if i := loadBin(time.Hour); i != loadBins-1 {
		t.Fatalf("an hour: bin %d, want the last (%d)", i, loadBins-1)
	}
	if i := loadBin(-time.Second); i != 0 {
		t.Fatalf("a negative duration: bin %d", i)
	}
}

// The rate is the requests of the last loadWindow whole seconds over the
// window; the second in progress and seconds that left the window do not
// count; p99 is the bin of the 99th percentile.
func TestLoadSlidingWindow(t *testing.T) {
	m := newLoadMeter()
	if st := m.statusAt(0); st.Requests != 0 || st.RequestsPerSecond != 0 || st.P99Ms != 0 || st.WindowSeconds != loadWindow {
		t.Fatalf("idle meter: %+v", st)
	}
	// Seconds 0..9: 100 requests each, 98 at 1 ms and 2 at 100 ms.
	for s := int64(0); s < 10; s++ {
		for i := 0; i < 98; i++ {
			m.observeAt(s, time.Millisecond)
		}
		m.observeAt(s, 100*time.Millisecond)
		m.observeAt(s, 100*time.Millisecond)
	}
	m.observeAt(10, time.Second) // in progress at 10: not counted yet
	st := m.statusAt(10)
	if st.Requests != 1000 || st.RequestsPerSecond != 100 {
		t.Fatalf("after 10 busy seconds: %+v, want 1000 requests, 100/s", st)
	}
	if st.P99Ms < 100 || st.P99Ms > 125 {
		t.Fatalf("p99 %v ms, want 100 ms rounded up to its bin", st.P99Ms)
	}
	// At 11, second 0 has left the window and 10 has entered it.
	st = m.statusAt(11)
	if st.Requests != 901 {
		t.Fatalf("at 11: %d requests, want 901", st.Requests)
	}
	// Idle until 25: nothing left, whatever the buckets still hold.
	if st = m.statusAt(25); st.Requests != 0 || st.P99Ms != 0 {
		t.Fatalf("after 15 idle seconds: %+v", st)
	}
	// A bucket reused for a later second starts empty.
	s := int64(len(m.buckets)) * 3
	m.observeAt(s, time.Millisecond)
	if st = m.statusAt(s + 1); st.Requests != 1 || st.P99Ms < 1 || st.P99Ms > 1.25 {
		t.Fatalf("one request after a reuse: %+v", st)
	}
	// A straggler still in a second whose bucket a later second took is
	// dropped, not added to the later second.
	m.observeAt(s-int64(len(m.buckets)), time.Millisecond)
	if st = m.statusAt(s + 1); st.Requests != 1 {
		t.Fatalf("a straggler was counted: %+v", st)
	}
}

// Concurrent recorders lose nothing within a second (the race detector
// watches the buckets).
func TestLoadConcurrentRecorders(t *testing.T) {
	m := newLoadMeter()
	m.observeAt(5, time.Millisecond) // claims second 5's bucket
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				m.observeAt(5, time.Duration(i)*time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if st := m.statusAt(6); st.Requests != 8001 {
		t.Fatalf("%d requests counted, want 8001", st.Requests)
	}
}

// A node reports in /v1/cluster the requests its clients sent it, over
// Redis and over HTTP, and not its own cluster-status calls.
func TestLoadInClusterStatus(t *testing.T) {
	s, err := Start(Config{NodeID: "n1", DataDir: t.TempDir(), PeerAddr: freePeerAddr(t),
		RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A raw connection: a client library's handshake would add commands.
	conn, err := net.Dial("tcp", s.RespAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; i < 30; i++ {
		if _, err := io.WriteString(conn, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "+OK\r\n" {
			t.Fatalf("SET: %q %v", line, err)
		}
	}
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest(http.MethodPut, "http://"+s.HTTPAddr()+"/v1/kv/h", strings.NewReader("v"))
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	status := func() httpapi.ClusterStatus {
		r, err := http.Get("http://" + s.HTTPAddr() + "/v1/cluster")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var st httpapi.ClusterStatus
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	// The requests are counted once their second is over.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := status()
		if st.Load == nil {
			t.Fatal("no load in /v1/cluster")
		}
		if st.Load.Requests == 50 {
			if st.Load.RequestsPerSecond != 5 || st.Load.P99Ms <= 0 || st.Load.WindowSeconds != loadWindow {
				t.Fatalf("load %+v", *st.Load)
			}
			return
		}
		if st.Load.Requests > 50 || time.Now().After(deadline) {
			t.Fatalf("load %+v, want the 50 requests sent (30 SET, 20 PUT)", *st.Load)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func BenchmarkLoadObserve(b *testing.B) {
	m := newLoadMeter()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observe(150 * time.Microsecond)
		}
	})
}
