// Command respfloor is the cheapest Redis-protocol key-value server we know
// how to write in Go: a goroutine per connection on the standard net package,
// buffered reads and writes, and an in-memory map under sharded mutexes. No
// versions, no log, no disk.
//
// It is a measuring stick, not a product: bench/redis/run.sh runs it next to
// ringkv and redis-server so that the report shows how much of the distance
// between ringkv and redis-server is the cost of serving RESP from a Go
// process at all (the scheduler, the netpoller, one goroutine per client)
// and how much is ringkv's own work.
//
//	respfloor -addr 127.0.0.1:PORT
//
// It understands PING, SET, GET, DBSIZE and enough of CONFIG GET for
// redis-benchmark; anything else gets an error reply.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"hash/maphash"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
)

const shards = 64

type store struct {
	seed   maphash.Seed
	shards [shards]struct {
		mu sync.RWMutex
		m  map[string][]byte
	}
}

func newStore() *store {
	s := &store{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string][]byte)
	}
	return s
}

func (s *store) shard(k []byte) int { return int(maphash.Bytes(s.seed, k) % shards) }

func (s *store) set(k, v []byte) {
	sh := &s.shards[s.shard(k)]
	sh.mu.Lock()
	sh.m[string(k)] = append([]byte(nil), v...)
	sh.mu.Unlock()
}

func (s *store) get(k []byte) ([]byte, bool) {
	sh := &s.shards[s.shard(k)]
	sh.mu.RLock()
	v, ok := sh.m[string(k)]
	sh.mu.RUnlock()
	return v, ok
}

func (s *store) size() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.RLock()
		n += len(s.shards[i].m)
		s.shards[i].mu.RUnlock()
	}
	return n
}

func main() {
	addr := flag.String("addr", "127.0.0.1:6379", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("respfloor: %v", err)
	}
	s := newStore()
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("respfloor: accept: %v", err)
		}
		go serve(c, s)
	}
}

var errProtocol = errors.New("protocol error")

// readCommand reads one RESP array of bulk strings into args (reusing it).
func readCommand(r *bufio.Reader, args [][]byte) ([][]byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 4 || line[0] != '*' {
		return nil, errProtocol
	}
	n, err := strconv.Atoi(string(line[1 : len(line)-2]))
	if err != nil || n < 1 || n > 1024 {
		return nil, errProtocol
	}
	args = args[:0]
	for i := 0; i < n; i++ {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(line) < 4 || line[0] != '$' {
			return nil, errProtocol
		}
		size, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil || size < 0 || size > 1<<20 {
			return nil, errProtocol
		}
		arg := make([]byte, size+2)
		if _, err := io.ReadFull(r, arg); err != nil {
			return nil, err
		}
		args = append(args, arg[:size])
	}
	return args, nil
}

func serve(c net.Conn, s *store) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriterSize(c, 16<<10)
	var args [][]byte
	for {
		var err error
		args, err = readCommand(r, args)
		if err != nil {
			if errors.Is(err, errProtocol) {
				w.WriteString("-ERR protocol error\r\n")
				w.Flush()
			}
			return
		}
		switch cmd := string(args[0]); {
		case len(args) == 3 && (cmd == "SET" || cmd == "set"):
			s.set(args[1], args[2])
			w.WriteString("+OK\r\n")
		case len(args) == 2 && (cmd == "GET" || cmd == "get"):
			if v, ok := s.get(args[1]); ok {
				fmt.Fprintf(w, "$%d\r\n", len(v))
				w.Write(v)
				w.WriteString("\r\n")
			} else {
				w.WriteString("$-1\r\n")
			}
		case cmd == "PING" || cmd == "ping":
			w.WriteString("+PONG\r\n")
		case cmd == "DBSIZE" || cmd == "dbsize":
			fmt.Fprintf(w, ":%d\r\n", s.size())
		case cmd == "CONFIG" || cmd == "config":
			w.WriteString("*0\r\n")
		default:
			fmt.Fprintf(w, "-ERR unknown command '%s'\r\n", cmd)
		}
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}
