package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startServer serves b on a loopback port and closes it when the test ends.
func startServer(t *testing.T, b Backend, o Options) (*Server, string) {
	t.Helper()
	if b == nil {
		b = NewMapBackend()
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(b, o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

func newClient(t *testing.T, addr string, proto int, mod func(*redis.Options)) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: addr, Protocol: proto, DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
	if mod != nil {
		mod(o)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn is a plain TCP client for checking exact bytes on the wire.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.nc, s); err != nil {
		r.t.Fatal(err)
	}
}

// cmd encodes args as a RESP array.
func cmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// reply reads one whole reply and returns its raw bytes.
func (r *rawConn) reply() string {
	r.t.Helper()
	var b strings.Builder
	if err := r.readValue(&b); err != nil {
		r.t.Fatalf("reading reply: %v (so far %q)", err, b.String())
	}
	return b.String()
}

func (r *rawConn) readValue(b *strings.Builder) error {
	line, err := r.br.ReadString('\n')
	b.WriteString(line)
	if err != nil {
		return err
	}
	var n int
	switch line[0] {
	case '$', '=':
		fmt.Sscanf(line[1:], "%d", &n)
		if n < 0 {
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			return err
		}
		b.Write(buf)
	case '*', '~', '>', '%':
		fmt.Sscanf(line[1:], "%d", &n)
		if line[0] == '%' {
			n *= 2
		}
		for range n {
			if err := r.readValue(b); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *rawConn) expectClosed() {
	r.t.Helper()
	if b, err := r.br.ReadByte(); err == nil {
		r.t.Fatalf("connection still open, read %q", b)
	}
}

func TestGoRedis(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			_, addr := startServer(t, nil, Options{})
			ctx := context.Background()
			c := newClient(t, addr, proto, nil)

			if v, err := c.Ping(ctx).Result(); err != nil || v != "PONG" {
				t.Fatalf("PING: %q %v", v, err)
			}
			if v, err := c.Echo(ctx, "hi there").Result(); err != nil || v != "hi there" {
				t.Fatalf("ECHO: %q %v", v, err)
			}
			if err := c.Get(ctx, "missing").Err(); err != redis.Nil {
				t.Fatalf("GET missing: %v, want redis.Nil", err)
			}
			if err := c.Set(ctx, "k", "v\r\nbinary\x00", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v\r\nbinary\x00" {
				t.Fatalf("GET: %q %v", v, err)
			}
			if err := c.MSet(ctx, "a", "1", "b", "2").Err(); err != nil {
				t.Fatal(err)
			}
			vals, err := c.MGet(ctx, "a", "nope", "b").Result()
			if err != nil || len(vals) != 3 || vals[0] != "1" || vals[1] != nil || vals[2] != "2" {
				t.Fatalf("MGET: %#v %v", vals, err)
			}
			if n, err := c.Exists(ctx, "a", "b", "nope", "a").Result(); err != nil || n != 3 {
				t.Fatalf("EXISTS: %d %v", n, err)
			}
			if n, err := c.Del(ctx, "a", "nope", "b").Result(); err != nil || n != 2 {
				t.Fatalf("DEL: %d %v", n, err)
			}
			if n, err := c.Exists(ctx, "a").Result(); err != nil || n != 0 {
				t.Fatalf("EXISTS after DEL: %d %v", n, err)
			}

			// SET options.
			if ok, err := c.SetNX(ctx, "k", "other", 0).Result(); err != nil || ok {
				t.Fatalf("SETNX on existing: %v %v", ok, err)
			}
			if ok, err := c.SetNX(ctx, "fresh", "1", 0).Result(); err != nil || !ok {
				t.Fatalf("SETNX on missing: %v %v", ok, err)
			}
			if ok, err := c.SetXX(ctx, "absent", "1", 0).Result(); err != nil || ok {
				t.Fatalf("SETXX on missing: %v %v", ok, err)
			}
			if old, err := c.SetArgs(ctx, "fresh", "2", redis.SetArgs{Get: true}).Result(); err != nil || old != "1" {
				t.Fatalf("SET GET: %q %v", old, err)
			}
			if err := c.SetArgs(ctx, "brand-new", "2", redis.SetArgs{Get: true}).Err(); err != redis.Nil {
				t.Fatalf("SET GET on missing: %v", err)
			}
			err = c.Set(ctx, "x", "1", time.Minute).Err()
			if err == nil || err.Error() != "ERR ringkv does not support key expiry" {
				t.Fatalf("SET EX: %v", err)
			}
			if err := c.Do(ctx, "set", "x", "1", "bogus").Err(); err == nil || err.Error() != "ERR syntax error" {
				t.Fatalf("SET bogus: %v", err)
			}

			// INFO.
			info, err := c.Info(ctx).Result()
			if err != nil || !strings.Contains(info, "# Server\r\n") || !strings.Contains(info, "cmdstat_set:calls=") ||
				!strings.Contains(info, "# Backend\r\nbackend:memory") {
				t.Fatalf("INFO: %q %v", info, err)
			}
			info, err = c.Info(ctx, "backend").Result()
			if err != nil || strings.Contains(info, "# Server") || !strings.Contains(info, "keys:") {
				t.Fatalf("INFO backend: %q %v", info, err)
			}

			// Errors.
			if err := c.Do(ctx, "NOSUCH", "a", "b").Err(); err == nil ||
				err.Error() != "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' " {
				t.Fatalf("unknown: %q", err)
			}
			if err := c.Do(ctx, "get").Err(); err == nil || err.Error() != "ERR wrong number of arguments for 'get' command" {
				t.Fatalf("arity: %v", err)
			}
			if err := c.Do(ctx, "select", "1").Err(); err == nil {
				t.Fatal("SELECT 1 succeeded")
			}
			if err := c.Do(ctx, "select", "0").Err(); err != nil {
				t.Fatal(err)
			}
			if n, err := c.DBSize(ctx).Result(); err != nil || n != 3 {
				t.Fatalf("DBSIZE: %d %v", n, err)
			}

			// Pipelining.
			pipe := c.Pipeline()
			for i := range 200 {
				pipe.Set(ctx, fmt.Sprintf("p%d", i), i, 0)
			}
			gets := make([]*redis.StringCmd, 200)
			for i := range gets {
				gets[i] = pipe.Get(ctx, fmt.Sprintf("p%d", i))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			for i, g := range gets {
				if g.Val() != fmt.Sprint(i) {
					t.Fatalf("pipelined GET p%d = %q", i, g.Val())
				}
			}

			// CLIENT, CONFIG, COMMAND.
			if err := c.Do(ctx, "client", "setname", "tester").Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.Do(ctx, "client", "setname", "bad name").Err(); err == nil {
				t.Fatal("CLIENT SETNAME with a space succeeded")
			}
			cfg, err := c.ConfigGet(ctx, "*").Result()
			if err != nil || cfg["appendonly"] != "no" || cfg["databases"] != "1" {
				t.Fatalf("CONFIG GET: %v %v", cfg, err)
			}
			cmds, err := c.Command(ctx).Result()
			if err != nil || cmds["get"] == nil || !cmds["get"].ReadOnly || cmds["set"].Arity != -3 {
				t.Fatalf("COMMAND: %v %v", cmds["get"], err)
			}
			if n, err := c.Do(ctx, "command", "count").Int(); err != nil || n != len(cmds) {
				t.Fatalf("COMMAND COUNT: %d %v", n, err)
			}
			if err := c.Do(ctx, "command", "docs").Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHello(t *testing.T) {
	_, addr := startServer(t, nil, Options{})
	ctx := context.Background()
	c := newClient(t, addr, 3, nil)
	conn := c.Conn()
	defer conn.Close()
	m, err := conn.Hello(ctx, 3, "", "", "").Result()
	if err != nil || m["proto"] != int64(3) || m["server"] != "ringkv" || m["mode"] != "standalone" {
		t.Fatalf("HELLO 3: %v %v", m, err)
	}

	r := dialRaw(t, addr)
	r.send(cmd("HELLO", "4"))
	if got := r.reply(); got != "-NOPROTO unsupported protocol version\r\n" {
		t.Fatalf("HELLO 4: %q", got)
	}
	r.send(cmd("HELLO", "2"))
	if got := r.reply(); !strings.HasPrefix(got, "*14\r\n$6\r\nserver\r\n$6\r\nringkv\r\n") {
		t.Fatalf("HELLO 2: %q", got)
	}
	r.send(cmd("GET", "nope"))
	if got := r.reply(); got != "$-1\r\n" {
		t.Fatalf("RESP2 null: %q", got)
	}
	r.send(cmd("HELLO", "3", "SETNAME", "raw"))
	if got := r.reply(); !strings.HasPrefix(got, "%7\r\n") || !strings.Contains(got, "$5\r\nproto\r\n:3\r\n") {
		t.Fatalf("HELLO 3: %q", got)
	}
	r.send(cmd("GET", "nope") + cmd("CLIENT", "GETNAME") + cmd("CONFIG", "GET", "save"))
	if got := r.reply(); got != "_\r\n" {
		t.Fatalf("RESP3 null: %q", got)
	}
	if got := r.reply(); got != "$3\r\nraw\r\n" {
		t.Fatalf("CLIENT GETNAME: %q", got)
	}
	if got := r.reply(); got != "%1\r\n$4\r\nsave\r\n$0\r\n\r\n" {
		t.Fatalf("CONFIG GET in RESP3: %q", got)
	}
	r.send(cmd("RESET") + cmd("GET", "nope"))
	if got := r.reply(); got != "+RESET\r\n" {
		t.Fatalf("RESET: %q", got)
	}
	if got := r.reply(); got != "$-1\r\n" {
		t.Fatalf("RESP2 null after RESET: %q", got)
	}
}

func TestSiblings(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			_, addr := startServer(t, nil, Options{})
			ctx := context.Background()
			c := newClient(t, addr, proto, nil)

			siblings := func(key string) (string, []string) {
				t.Helper()
				v, err := c.Do(ctx, "RINGKV.SIBLINGS", key).Slice()
				if err != nil || len(v) != 2 {
					t.Fatalf("RINGKV.SIBLINGS: %#v %v", v, err)
				}
				var vals []string
				for _, x := range v[1].([]any) {
					vals = append(vals, x.(string))
				}
				return v[0].(string), vals
			}
			if tok, vals := siblings("k"); tok != "" || len(vals) != 0 {
				t.Fatalf("missing key: %q %q", tok, vals)
			}
			c.Set(ctx, "k", "v0", 0)
			tok, vals := siblings("k")
			if tok == "" || len(vals) != 1 || vals[0] != "v0" {
				t.Fatalf("after SET: %q %q", tok, vals)
			}
			// Two writers with the same context: concurrent, so two siblings.
			if err := c.Do(ctx, "RINGKV.PUT", "k", tok, "left").Err(); err != nil {
				t.Fatal(err)
			}
			if err := c.Do(ctx, "ringkv.put", "k", tok, "right").Err(); err != nil {
				t.Fatal(err)
			}
			tok2, vals := siblings("k")
			if len(vals) != 2 || vals[0] != "left" || vals[1] != "right" {
				t.Fatalf("siblings: %q", vals)
			}
			if v := c.Get(ctx, "k").Val(); v != "right" {
				t.Fatalf("GET with siblings = %q, want the newest", v)
			}
			// A write with the merged context resolves them.
			if err := c.Do(ctx, "RINGKV.PUT", "k", tok2, "merged").Err(); err != nil {
				t.Fatal(err)
			}
			if _, vals := siblings("k"); len(vals) != 1 || vals[0] != "merged" {
				t.Fatalf("after resolving: %q", vals)
			}
			err := c.Do(ctx, "RINGKV.PUT", "k", "garbage", "x").Err()
			if err == nil || err.Error() != "ERR invalid causal context" {
				t.Fatalf("bad context: %v", err)
			}
			if err := c.Do(ctx, "RINGKV.PUT", "k", "x").Err(); err == nil || !strings.Contains(err.Error(), "wrong number of arguments") {
				t.Fatalf("arity: %v", err)
			}
		})
	}
}

func TestOversizedValueKeepsConnection(t *testing.T) {
	s, addr := startServer(t, nil, Options{MaxValueSize: 1024})
	ctx := context.Background()
	c := newClient(t, addr, 3, func(o *redis.Options) { o.PoolSize = 1 })
	big := strings.Repeat("x", 100_000)
	err := c.Set(ctx, "big", big, 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "ERR value too large") {
		t.Fatalf("oversized SET: %v", err)
	}
	if err := c.Set(ctx, "small", "ok", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v := c.Get(ctx, "small").Val(); v != "ok" {
		t.Fatalf("GET after oversized SET: %q", v)
	}
	if st := s.Stats(); st.TotalConnections != 1 || st.Commands["set"].Errors != 1 {
		t.Fatalf("stats: %+v", st)
	}

	// On a raw connection: the error, then the next pipelined command on the same connection.
	r := dialRaw(t, addr)
	r.send(cmd("SET", "big", big) + cmd("GET", "small"))
	if got := r.reply(); !strings.HasPrefix(got, "-ERR value too large: argument 2 has 100000 bytes, the limit is 1024 bytes") {
		t.Fatalf("got %q", got)
	}
	if got := r.reply(); got != "$2\r\nok\r\n" {
		t.Fatalf("got %q", got)
	}
}

func TestAuth(t *testing.T) {
	_, addr := startServer(t, nil, Options{Password: "s3cret"})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			anon := newClient(t, addr, proto, nil)
			if err := anon.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
				t.Fatalf("without password: %v", err)
			}
			good := newClient(t, addr, proto, func(o *redis.Options) { o.Password = "s3cret" })
			if err := good.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if v := good.Get(ctx, "k").Val(); v != "v" {
				t.Fatalf("GET: %q", v)
			}
			bad := newClient(t, addr, proto, func(o *redis.Options) { o.Password = "wrong" })
			if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
				t.Fatalf("wrong password: %v", err)
			}
		})
	}
	r := dialRaw(t, addr)
	r.send(cmd("PING") + cmd("AUTH", "nope") + cmd("AUTH", "s3cret") + cmd("PING"))
	for _, want := range []string{
		"-NOAUTH Authentication required.\r\n",
		"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
		"+OK\r\n", "+PONG\r\n",
	} {
		if got := r.reply(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// With Authenticate, users other than "default" log in with AUTH user
// pass or HELLO ... AUTH, and AUTH pass means the user "default".
func TestAuthenticateUsers(t *testing.T) {
	users := map[string]string{"alice": "wonder", "default": "dpass"}
	_, addr := startServer(t, nil, Options{Authenticate: func(user, pass string) bool {
		p, ok := users[user]
		return ok && p == pass
	}})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		anon := newClient(t, addr, proto, nil)
		if err := anon.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
			t.Fatalf("RESP%d without credentials: %v", proto, err)
		}
		alice := newClient(t, addr, proto, func(o *redis.Options) { o.Username, o.Password = "alice", "wonder" })
		if err := alice.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatalf("RESP%d alice: %v", proto, err)
		}
		mallory := newClient(t, addr, proto, func(o *redis.Options) { o.Username, o.Password = "alice", "dpass" })
		if err := mallory.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("RESP%d alice with default's password: %v", proto, err)
		}
	}
	r := dialRaw(t, addr)
	r.send(cmd("AUTH", "wonder") + cmd("AUTH", "dpass") + cmd("PING") + cmd("RESET") + cmd("PING") + cmd("HELLO", "2", "AUTH", "alice", "wonder"))
	for _, want := range []string{
		"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
		"+OK\r\n", "+PONG\r\n", "+RESET\r\n",
		"-NOAUTH Authentication required.\r\n",
	} {
		if got := r.reply(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if got := r.reply(); !strings.HasPrefix(got, "*") {
		t.Fatalf("HELLO 2 AUTH alice: got %q, want the server's map as an array", got)
	}
}

func TestProtocolErrorClosesConnection(t *testing.T) {
	s, addr := startServer(t, nil, Options{})
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*1\r\n$999999999999\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*1\r\n:5\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"},
		{"GET \"a\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
	} {
		r := dialRaw(t, addr)
		r.send(cmd("PING") + tc.in + cmd("PING"))
		if got := r.reply(); got != "+PONG\r\n" {
			t.Fatalf("%q: first reply %q", tc.in, got)
		}
		if got := r.reply(); got != tc.want {
			t.Fatalf("%q: got %q, want %q", tc.in, got, tc.want)
		}
		r.expectClosed()
	}
	if n := s.Stats().ProtocolErrors; n != 4 {
		t.Fatalf("ProtocolErrors = %d", n)
	}
	// An HTTP request is dropped without a reply.
	r := dialRaw(t, addr)
	r.send("POST / HTTP/1.1\r\nHost: x\r\n\r\n")
	r.expectClosed()
}

func TestInlineAndPipelineRaw(t *testing.T) {
	_, addr := startServer(t, nil, Options{})
	r := dialRaw(t, addr)
	r.send("PING\r\nSET k \"hello world\"\r\nGET k\nECHO 'a b'\r\nQUIT\r\nPING\r\n")
	for _, want := range []string{"+PONG\r\n", "+OK\r\n", "$11\r\nhello world\r\n", "$3\r\na b\r\n", "+OK\r\n"} {
		if got := r.reply(); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	r.expectClosed()

	// A deep pipeline in one write gets every reply in order.
	r = dialRaw(t, addr)
	var b strings.Builder
	for i := range 5000 {
		b.WriteString(cmd("SET", fmt.Sprint("k", i), fmt.Sprint(i)))
		b.WriteString(cmd("GET", fmt.Sprint("k", i)))
	}
	go r.send(b.String())
	for i := range 5000 {
		if got := r.reply(); got != "+OK\r\n" {
			t.Fatalf("SET %d: %q", i, got)
		}
		want := fmt.Sprintf("$%d\r\n%d\r\n", len(fmt.Sprint(i)), i)
		if got := r.reply(); got != want {
			t.Fatalf("GET %d: %q, want %q", i, got, want)
		}
	}
}

// failing is a Backend whose every data call fails with err.
type failing struct {
	*MapBackend
	err error
}

func (f failing) Get(context.Context, []byte) ([]byte, bool, error) { return nil, false, f.err }
func (f failing) Set(context.Context, []byte, []byte) error         { return f.err }

type quorumErr struct{ got, want int }

func (e quorumErr) Error() string {
	return fmt.Sprintf("not enough replicas answered (%d of %d)", e.got, e.want)
}
func (quorumErr) RESPCode() string { return "QUORUM" }

func TestBackendErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&Error{Code: "QUORUM", Msg: "not enough replicas answered (1 of 2)"}, "QUORUM not enough replicas answered (1 of 2)"},
		{fmt.Errorf("put k: %w", quorumErr{1, 2}), "QUORUM put k: not enough replicas answered (1 of 2)"},
		{errors.New("disk on fire\r\nreally"), "ERR disk on fire  really"},
		{context.DeadlineExceeded, "TIMEOUT context deadline exceeded"},
	} {
		s, addr := startServer(t, failing{NewMapBackend(), tc.err}, Options{})
		c := newClient(t, addr, 3, nil)
		if err := c.Get(ctx, "k").Err(); err == nil || err.Error() != tc.want {
			t.Fatalf("GET: %v, want %q", err, tc.want)
		}
		if err := c.Set(ctx, "k", "v", 0).Err(); err == nil || err.Error() != tc.want {
			t.Fatalf("SET: %v, want %q", err, tc.want)
		}
		if err := c.MGet(ctx, "a", "b").Err(); err == nil || err.Error() != tc.want {
			t.Fatalf("MGET: %v, want %q", err, tc.want)
		}
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after errors: %v", err)
		}
		st := s.Stats()
		if g := st.Commands["get"]; g.Calls != 1 || g.Errors != 1 {
			t.Fatalf("get stats: %+v", g)
		}
	}
}

func TestStats(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	s, addr := startServer(t, nil, Options{OnCommand: func(name string, d time.Duration, failed bool) {
		mu.Lock()
		seen[name]++
		mu.Unlock()
	}})
	r := dialRaw(t, addr)
	r.send(cmd("SET", "a", "1") + cmd("GET", "a") + cmd("GET", "a") + cmd("BOGUS") + cmd("GET"))
	for range 5 {
		r.reply()
	}
	st := s.Stats()
	if st.ConnectedClients != 1 || st.TotalCommands != 5 {
		t.Fatalf("stats: %+v", st)
	}
	if g := st.Commands["get"]; g.Calls != 3 || g.Errors != 1 {
		t.Fatalf("get: %+v", g)
	}
	if u := st.Commands["unknown"]; u.Calls != 1 || u.Errors != 1 {
		t.Fatalf("unknown: %+v", u)
	}
	mu.Lock()
	if seen["get"] != 3 || seen["set"] != 1 || seen["unknown"] != 1 {
		t.Fatalf("OnCommand saw %v", seen)
	}
	mu.Unlock()
	r.send(cmd("CLIENT", "LIST"))
	if got := r.reply(); !strings.Contains(got, " cmd=client ") || !strings.Contains(got, "resp=2") {
		t.Fatalf("CLIENT LIST: %q", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	_, addr := startServer(t, nil, Options{IdleTimeout: 200 * time.Millisecond})
	r := dialRaw(t, addr)
	r.send(cmd("PING"))
	if got := r.reply(); got != "+PONG\r\n" {
		t.Fatal(got)
	}
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestReadTimeoutOnPartialCommand(t *testing.T) {
	_, addr := startServer(t, nil, Options{ReadTimeout: 200 * time.Millisecond})
	r := dialRaw(t, addr)
	r.send("*2\r\n$3\r\nGET\r\n")
	r.expectClosed()
}

func TestCloseClosesClients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(NewMapBackend(), Options{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	var conns []*rawConn
	for range 5 {
		r := dialRaw(t, ln.Addr().String())
		r.send(cmd("PING"))
		r.reply()
		conns = append(conns, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	for _, r := range conns {
		r.expectClosed()
	}
	if n := s.Stats().ConnectedClients; n != 0 {
		t.Fatalf("%d clients after Close", n)
	}
	if err := s.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestConcurrentClients(t *testing.T) {
	_, addr := startServer(t, nil, Options{})
	ctx := context.Background()
	c := newClient(t, addr, 3, func(o *redis.Options) { o.PoolSize = 20 })
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 100 {
				k := fmt.Sprintf("g%d-%d", g, i)
				if err := c.Set(ctx, k, k, 0).Err(); err != nil {
					t.Error(err)
					return
				}
				if v := c.Get(ctx, k).Val(); v != k {
					t.Errorf("GET %s = %q", k, v)
					return
				}
			}
		})
	}
	wg.Wait()
}
