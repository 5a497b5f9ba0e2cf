package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A client trickling a PUT body is cut off after BodyTimeout, even under an
// http.Server with no timeouts of its own; the store is never called, and
// other clients are served meanwhile.
func TestBodyTimeoutTrickle(t *testing.T) {
	st := NewMemoryStore("n1")
	srv := httptest.NewServer(NewHandler(st, nil, Options{BodyTimeout: 300 * time.Millisecond}))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	start := time.Now()
	closed := false
	for i := 0; i < 100 && time.Since(start) < 5*time.Second; i++ {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("x")); err != nil {
			closed = true
			break
		}
		conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := conn.Read(make([]byte, 1024)); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				closed = true
				break
			}
		} else {
			closed = true // answered (400: the body could not be read); fine
			break
		}
	}
	if !closed {
		t.Fatalf("a trickled body was still being read after %v", time.Since(start))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut off after %v, want about the 300ms BodyTimeout", d)
	}
	if obj, _ := st.Get(t.Context(), []byte("slow"), 0); obj != nil {
		t.Fatalf("the trickled write reached the store: %v", obj)
	}
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
}
