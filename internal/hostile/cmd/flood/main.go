// Command flood is the connection-flood part of the hostile suite (see
// package hostile). It starts a real ringkv node in this process, opens
// -conns connections at once to its Redis port and to its peer port, and
// to a Redis-protocol server with a connection limit, measuring memory
// before and during each flood while a well-behaved client keeps working.
// It prints one JSON object (Report) on stdout; the test asserts on it.
//
// It must be built without -race: the race detector stops at about 8,000
// goroutines, and the node serving the flood needs one per connection.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ringkv/ringkv/api/resp"
	"github.com/ringkv/ringkv/internal/hostile"
	"github.com/ringkv/ringkv/server"
)

// Phase is one flood's outcome.
type Phase struct {
	Name        string
	Conns       int
	Before      hostile.Memory
	During      hostile.Memory
	After       hostile.Memory
	Served      int // connections answered normally (PONG), or left open (peer port)
	Refused     int // answered "-ERR max number of clients reached"
	Closed      int // closed without an answer
	Failed      int // dial failures and anything else
	FirstErrors []string
	Probe       hostile.ProbeResult
	Seconds     float64
}

// Report is what the command prints.
type Report struct {
	Skip   string `json:",omitempty"`
	Error  string `json:",omitempty"`
	NoFile uint64
	Phases []Phase
}

func main() {
	conns := flag.Int("conns", 5000, "connections per flood")
	flag.Parse()
	rep := run(*conns)
	json.NewEncoder(os.Stdout).Encode(rep)
}

func run(n int) (rep Report) {
	// Both ends of every connection live in this process.
	need := uint64(2*n + 1000)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		rep.Skip = fmt.Sprintf("getrlimit: %v", err)
		return rep
	}
	if lim.Cur < need {
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			rep.Skip = fmt.Sprintf("cannot raise RLIMIT_NOFILE to %d: %v", need, err)
			return rep
		}
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	rep.NoFile = lim.Cur
	if lim.Cur < need {
		rep.Skip = fmt.Sprintf("RLIMIT_NOFILE is %d (hard limit %d); %d connections from this process need %d", lim.Cur, lim.Max, n, need)
		return rep
	}

	dir, err := os.MkdirTemp("", "ringkv-flood")
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer os.RemoveAll(dir)
	// The gossip port is the peer port's next: a free peer port may have
	// a busy neighbour, so a few tries.
	var node *server.Server
	var peer string
	for try := 0; try < 5; try++ {
		if peer, err = freeAddr(); err != nil {
			break
		}
		node, err = server.Start(server.Config{NodeID: "n1", DataDir: dir, PeerAddr: peer,
			RespAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Replicas: 1, Logf: func(string, ...any) {}})
		if err == nil {
			break
		}
	}
	if err != nil {
		rep.Error = fmt.Sprintf("start node: %v", err)
		return rep
	}
	defer node.Close()

	ping := []byte("*1\r\n$4\r\nPING\r\n")
	// 1. The node's Redis port: every connection sends PING and must get
	// PONG; every other one then leaves a command half sent.
	rep.Phases = append(rep.Phases, flood("resp-node", node.RespAddr(), node.RespAddr(), n, func(i int, c net.Conn) string {
		return redisHello(c, ping, i%2 == 1)
	}))
	// 2. A Redis-protocol server with MaxConnections 1000: the rest are
	// refused with Redis' error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rs := resp.NewServer(resp.NewMapBackend(), resp.Options{MaxConnections: 1000})
	go rs.Serve(ln)
	rep.Phases = append(rep.Phases, flood("resp-maxclients", ln.Addr().String(), ln.Addr().String(), n, func(i int, c net.Conn) string {
		return redisHello(c, ping, false)
	}))
	rs.Close()
	// 3. The node's peer port: hello frames; over the transport's
	// MaxConnections (1024) the server closes.
	hello := frame(0, 1, 1, []byte("flood"))
	rep.Phases = append(rep.Phases, flood("peer-node", peer, node.RespAddr(), n, func(i int, c net.Conn) string {
		if _, err := c.Write(hello); err != nil {
			return "failed: " + err.Error()
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "served" // still open: accepted
		}
		return "closed"
	}))
	return rep
}

// redisHello sends PING and classifies the answer; half leaves a command
// half sent afterwards.
func redisHello(c net.Conn, ping []byte, half bool) string {
	if _, err := c.Write(ping); err != nil {
		return "failed: " + err.Error()
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	got := 0
	for got < len(buf) {
		k, err := c.Read(buf[got:])
		got += k
		if bytes.HasSuffix(buf[:got], []byte("\r\n")) {
			break
		}
		if err != nil {
			if got == 0 {
				return "closed"
			}
			break
		}
	}
	switch line := string(buf[:got]); line {
	case "+PONG\r\n":
		if half {
			c.Write([]byte("*2\r\n$3\r\nGET\r\n$10\r\nhalf"))
		}
		return "served"
	case "-ERR max number of clients reached\r\n":
		// The server closes after its error.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			return "failed: not closed after the error: " + err.Error()
		}
		c.Close() // as a client does once refused
		return "refused"
	default:
		return fmt.Sprintf("failed: answer %q", line)
	}
}

// flood opens n connections to addr at once (200 dialers), runs each
// through hello, measures memory with them all open while a probe talks
// to probeAddr, then closes them.
func flood(name, addr, probeAddr string, n int, hello func(i int, c net.Conn) string) Phase {
	ph := Phase{Name: name, Conns: n}
	start := time.Now()
	ph.Before = hostile.Measure()
	probe, err := hostile.StartProbe(probeAddr)
	if err != nil {
		ph.Failed = n
		ph.FirstErrors = []string{err.Error()}
		return ph
	}
	conns := make([]net.Conn, n)
	outcome := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 200 {
		wg.Go(func() {
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					outcome[i] = "failed: " + err.Error()
					continue
				}
				conns[i] = c
				outcome[i] = hello(i, c)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // the server goroutines settle
	ph.During = hostile.Measure()
	ph.Probe = probe.Stop()
	for i, o := range outcome {
		switch o {
		case "served":
			ph.Served++
		case "refused":
			ph.Refused++
		case "closed":
			ph.Closed++
		default:
			ph.Failed++
			if len(ph.FirstErrors) < 5 {
				ph.FirstErrors = append(ph.FirstErrors, fmt.Sprintf("conn %d: %s", i, o))
			}
		}
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	time.Sleep(500 * time.Millisecond)
	ph.After = hostile.Measure()
	ph.Seconds = time.Since(start).Seconds()
	return ph
}

// frame is a transport frame: length | id | type | kind | timeout | payload.
func frame(id uint64, typ, kind uint8, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(14+len(payload)))
	b = binary.BigEndian.AppendUint64(b, id)
	b = append(b, typ, kind, 0, 0, 0, 0)
	return append(b, payload...)
}

// freeAddr returns a loopback address whose port and the next one (the
// gossip port) are both free: Linux hands out odd ports to listeners and
// even ones to outgoing connections, so the port after a free one is often
// some connection's.
func freeAddr() (string, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l.Close()
		if err == nil {
			l2.Close()
			return fmt.Sprintf("127.0.0.1:%d", port), nil
		}
	}
	return "", errors.New("no two consecutive free ports on 127.0.0.1 in 100 tries")
}
