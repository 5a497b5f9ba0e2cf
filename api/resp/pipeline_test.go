package resp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowBackend is a MapBackend whose data calls first wait delay(op, key),
// and which counts the calls running at once.
type slowBackend struct {
	*MapBackend
	delay          func(op string, key []byte) time.Duration
	active, peak   atomic.Int64
	onSet          func(key []byte) // called inside Set, before the write
	blockUntilDone bool             // Set waits for its context to end
}

func (b *slowBackend) enter(ctx context.Context, op string, key []byte) {
	n := b.active.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if b.delay != nil {
		if d := b.delay(op, key); d > 0 {
			time.Sleep(d)
		}
	}
}

func (b *slowBackend) Get(ctx context.Context, k []byte) ([]byte, bool, error) {
	b.enter(ctx, "get", k)
	defer b.active.Add(-1)
	return b.MapBackend.Get(ctx, k)
}

func (b *slowBackend) Set(ctx context.Context, k, v []byte) error {
	b.enter(ctx, "set", k)
	defer b.active.Add(-1)
	if b.onSet != nil {
		b.onSet(k)
	}
	if b.blockUntilDone {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
	return b.MapBackend.Set(ctx, k, v)
}

func (b *slowBackend) Delete(ctx context.Context, k []byte) (bool, error) {
	b.enter(ctx, "del", k)
	defer b.active.Add(-1)
	return b.MapBackend.Delete(ctx, k)
}

// batchingBackend is a slowBackend that also takes runs of SETs as one call
// (SetBatcher), applying them in order, one delay for the whole batch. It
// records the size of every batch and fails the SETs whose value is "fail".
type batchingBackend struct {
	*slowBackend
	mu         sync.Mutex
	batches    []int // SET batches
	getBatches []int
}

func (b *batchingBackend) SetBatch(ctx context.Context, keys, values [][]byte) []error {
	b.enter(ctx, "setbatch", keys[0])
	defer b.active.Add(-1)
	b.mu.Lock()
	b.batches = append(b.batches, len(keys))
	b.mu.Unlock()
	errs := make([]error, len(keys))
	for i := range keys {
		if string(values[i]) == "fail" {
			errs[i] = &Error{Code: "QUORUM", Msg: "not enough replicas for " + string(keys[i])}
			continue
		}
		errs[i] = b.MapBackend.Set(ctx, keys[i], values[i])
	}
	return errs
}

func (b *batchingBackend) GetBatch(ctx context.Context, keys [][]byte) ([][]byte, []bool, []error) {
	b.enter(ctx, "getbatch", keys[0])
	defer b.active.Add(-1)
	b.mu.Lock()
	b.getBatches = append(b.getBatches, len(keys))
	b.mu.Unlock()
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	errs := make([]error, len(keys))
	for i, k := range keys {
		if string(k) == "fail" {
			errs[i] = &Error{Code: "QUORUM", Msg: "not enough replicas for fail"}
			continue
		}
		values[i], found[i], errs[i] = b.MapBackend.Get(ctx, k)
	}
	return values, found, errs
}

func (b *batchingBackend) maxBatch() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := 0
	for _, n := range b.batches {
		m = max(m, n)
	}
	return m
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

func TestPipelineRunsConcurrently(t *testing.T) {
	const n, delay = 64, 2 * time.Millisecond
	b := &slowBackend{MapBackend: NewMapBackend(), delay: func(string, []byte) time.Duration { return delay }}
	s, addr := startServer(t, b, Options{})
	r := dialRaw(t, addr)
	var sets, gets strings.Builder
	for i := range n {
		sets.WriteString(cmd("SET", fmt.Sprint("k", i), fmt.Sprint("v", i)))
		gets.WriteString(cmd("GET", fmt.Sprint("k", i)))
	}
	for _, tc := range []struct{ name, pipeline, reply string }{
		{"SET", sets.String(), "+OK\r\n"},
		{"GET", gets.String(), ""},
	} {
		start := time.Now()
		r.send(tc.pipeline)
		for i := range n {
			want := tc.reply
			if want == "" {
				want = bulk(fmt.Sprint("v", i))
			}
			if got := r.reply(); got != want {
				t.Fatalf("%s %d: %q, want %q", tc.name, i, got, want)
			}
		}
		// One after another this takes at least n*delay (128 ms, in practice
		// more: sleeps overshoot); concurrently, two rounds of maxInFlight.
		if d := time.Since(start); d > n*delay/2 {
			t.Errorf("%d pipelined %ss took %v; sequential execution takes %v", n, tc.name, d, n*delay)
		} else {
			t.Logf("%d pipelined %ss of %v each took %v", n, tc.name, delay, d)
		}
	}
	if p := b.peak.Load(); p < 8 || p > maxInFlight {
		t.Errorf("at most %d backend calls ran at once, want 8..%d", p, maxInFlight)
	}
	if p := s.peakInFlight.Load(); p > maxInFlight {
		t.Errorf("%d commands in flight on one connection, limit %d", p, maxInFlight)
	}
}

// A lone command runs inline: no slot, no goroutine.
func TestLoneCommandsRunInline(t *testing.T) {
	s, addr := startServer(t, nil, Options{})
	c := newClient(t, addr, 2, nil)
	ctx := context.Background()
	for i := range 50 {
		if err := c.Set(ctx, fmt.Sprint("k", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, fmt.Sprint("k", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if p := s.peakInFlight.Load(); p != 0 {
		t.Fatalf("unpipelined commands went through the pipeline (%d in flight)", p)
	}
}

// modelOp is one command of a random pipeline and what sequential execution
// against model answers.
type pipeModel map[string]string

func (m pipeModel) apply(args []string) string {
	switch strings.ToUpper(args[0]) {
	case "SET":
		k, v := args[1], args[2]
		old, found := m[k]
		nx, xx, get := false, false, false
		for _, o := range args[3:] {
			switch o {
			case "NX":
				nx = true
			case "XX":
				xx = true
			case "GET":
				get = true
			}
		}
		oldReply := "$-1\r\n"
		if found {
			oldReply = bulk(old)
		}
		if nx && found || xx && !found {
			if get {
				return oldReply
			}
			return "$-1\r\n"
		}
		m[k] = v
		if get {
			return oldReply
		}
		return "+OK\r\n"
	case "GET":
		if v, ok := m[args[1]]; ok {
			return bulk(v)
		}
		return "$-1\r\n"
	case "DEL", "EXISTS":
		n := 0
		for _, k := range args[1:] {
			if _, ok := m[k]; ok {
				n++
				if args[0] == "DEL" {
					delete(m, k)
				}
			}
		}
		return fmt.Sprintf(":%d\r\n", n)
	case "MGET":
		out := fmt.Sprintf("*%d\r\n", len(args)-1)
		for _, k := range args[1:] {
			if v, ok := m[k]; ok {
				out += bulk(v)
			} else {
				out += "$-1\r\n"
			}
		}
		return out
	case "MSET":
		for i := 1; i+1 < len(args); i += 2 {
			m[args[i]] = args[i+1]
		}
		return "+OK\r\n"
	case "ECHO":
		return bulk(args[1])
	case "DBSIZE":
		return fmt.Sprintf(":%d\r\n", len(m))
	}
	panic("model: " + args[0])
}

// Random pipelines over a few keys, on a backend that delays every call at
// random, answer exactly what executing them one by one answers.
func TestPipelineMatchesSequentialModel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delay   func(rng *rand.Rand) time.Duration
		always  bool
		batched bool // the backend is a SetBatcher
	}{
		// Random delays: commands finish in any order.
		{"random delays", func(rng *rand.Rand) time.Duration {
			if rng.IntN(3) == 0 {
				return 0
			}
			return time.Duration(rng.IntN(300)) * time.Microsecond
		}, false, false},
		// A fast backend with the quick-command shortcut off.
		{"fast backend, always concurrent", func(*rand.Rand) time.Duration { return 0 }, true, false},
		// Mostly fast with slow outliers: commands switch between inline and
		// concurrent execution as their average moves.
		{"mixed", func(rng *rand.Rand) time.Duration {
			if rng.IntN(10) == 0 {
				return time.Millisecond
			}
			return 0
		}, false, false},
		// The same with runs of SETs going to the backend as batches.
		{"random delays, SETs batched", func(rng *rand.Rand) time.Duration {
			if rng.IntN(3) == 0 {
				return 0
			}
			return time.Duration(rng.IntN(300)) * time.Microsecond
		}, false, true},
		{"fast backend, always concurrent, SETs batched", func(*rand.Rand) time.Duration { return 0 }, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var rngMu sync.Mutex
			b := &slowBackend{MapBackend: NewMapBackend(), delay: func(string, []byte) time.Duration {
				rngMu.Lock()
				defer rngMu.Unlock()
				return tc.delay(rng)
			}}
			var backend Backend = b
			var bb *batchingBackend
			if tc.batched {
				bb = &batchingBackend{slowBackend: b}
				backend = bb
			}
			s, addr := startServer(t, backend, Options{})
			s.alwaysConcurrent.Store(tc.always)
			checkAgainstModel(t, dialRaw(t, addr), rng, &rngMu)
			t.Logf("peak in flight %d, peak concurrent backend calls %d", s.peakInFlight.Load(), b.peak.Load())
			if bb != nil {
				if m := bb.maxBatch(); m < 2 {
					t.Fatalf("no batch of more than %d SETs reached the backend", m)
				}
				t.Logf("%d SET batches, the largest %d", len(bb.batches), bb.maxBatch())
			}
		})
	}
}

// A pipeline of SETs reaches a SetBatcher in batches of at most maxSetBatch,
// in order; a SET the backend fails gets its own error reply and its
// neighbours still succeed; later commands see the batch's writes.
func TestPipelinedSetsBatched(t *testing.T) {
	b := &batchingBackend{slowBackend: &slowBackend{MapBackend: NewMapBackend()}}
	_, addr := startServer(t, b, Options{})
	r := dialRaw(t, addr)
	const n = 150
	var wire strings.Builder
	for i := range n {
		v := fmt.Sprintf("v%d", i)
		if i == 70 {
			v = "fail"
		}
		wire.WriteString(cmd("SET", fmt.Sprintf("k%d", i%100), v))
	}
	wire.WriteString(cmd("GET", "k5"))  // last written by SET 105
	wire.WriteString(cmd("GET", "k70")) // SET 70 failed; SET 170 does not exist
	r.send(wire.String())
	for i := range n {
		want := "+OK\r\n"
		if i == 70 {
			want = "-QUORUM not enough replicas for k70\r\n"
		}
		if got := r.reply(); got != want {
			t.Fatalf("SET %d: got %q, want %q", i, got, want)
		}
	}
	if got := r.reply(); got != bulk("v105") {
		t.Fatalf("GET k5: got %q, want v105", got)
	}
	if got := r.reply(); got != "$-1\r\n" {
		t.Fatalf("GET k70: got %q, want a null reply", got)
	}
	total := 0
	for _, m := range b.batches {
		total += m
		if m > maxSetBatch {
			t.Fatalf("a batch of %d SETs, the bound is %d", m, maxSetBatch)
		}
	}
	if total != n || b.maxBatch() < 2 {
		t.Fatalf("batches %v: want %d SETs in total, some batched together", b.batches, n)
	}
}

func checkAgainstModel(t *testing.T, r *rawConn, rng *rand.Rand, rngMu *sync.Mutex) {
	rngMu.Lock()
	defer rngMu.Unlock()
	model := pipeModel{}
	keys := []string{"a", "b", "c", "d", "e", "f"}
	key := func() string { return keys[rng.IntN(len(keys))] }
	for p := range 40 {
		var wire strings.Builder
		var want []string
		for i := range 1 + rng.IntN(80) {
			val := fmt.Sprintf("v%d.%d", p, i)
			var args []string
			switch rng.IntN(12) {
			case 0, 1, 2:
				args = []string{"SET", key(), val}
			case 3, 4, 5:
				args = []string{"GET", key()}
			case 6:
				args = []string{"DEL", key()}
			case 7:
				args = []string{"SET", key(), val, []string{"NX", "XX", "GET", "NX", "XX"}[rng.IntN(5)]}
				if rng.IntN(2) == 0 && args[3] != "GET" {
					args = append(args, "GET")
				}
			case 8:
				args = []string{"MGET", key(), key(), key()}
			case 9:
				args = []string{"MSET", key(), val + "x", key(), val + "y"}
			case 10:
				args = []string{[]string{"DEL", "EXISTS"}[rng.IntN(2)], key(), key()}
			case 11:
				if rng.IntN(4) == 0 {
					args = []string{"DBSIZE"} // a barrier
				} else {
					args = []string{"ECHO", val}
				}
			}
			wire.WriteString(cmd(args...))
			want = append(want, model.apply(args))
		}
		// Sometimes the pipeline arrives in two parts, so the reader blocks
		// with commands in flight.
		w := wire.String()
		split := rng.IntN(3) == 0
		cut := rng.IntN(len(w))
		rngMu.Unlock() // the backend draws its delays meanwhile
		if split {
			r.send(w[:cut])
			time.Sleep(time.Millisecond)
			r.send(w[cut:])
		} else {
			r.send(w)
		}
		for i, wnt := range want {
			if got := r.reply(); got != wnt {
				rngMu.Lock()
				t.Fatalf("pipeline %d, command %d: got %q, want %q", p, i, got, wnt)
			}
		}
		rngMu.Lock()
	}
}

// Replies come back in command order even when later commands finish first.
func TestPipelineRepliesInOrder(t *testing.T) {
	const n = 100
	b := &slowBackend{MapBackend: NewMapBackend(), delay: func(op string, key []byte) time.Duration {
		var i int
		fmt.Sscanf(string(key), "k%d", &i)
		return time.Duration(n-i) * 20 * time.Microsecond // the first slowest
	}}
	_, addr := startServer(t, b, Options{})
	r := dialRaw(t, addr)
	var w strings.Builder
	for i := range n {
		w.WriteString(cmd("SET", fmt.Sprint("k", i), fmt.Sprint(i)))
	}
	for i := range n {
		w.WriteString(cmd("GET", fmt.Sprint("k", i)))
		w.WriteString(cmd("ECHO", fmt.Sprint("e", i)))
	}
	r.send(w.String())
	for i := range n {
		if got := r.reply(); got != "+OK\r\n" {
			t.Fatalf("SET %d: %q", i, got)
		}
	}
	for i := range n {
		if got, want := r.reply(), bulk(fmt.Sprint(i)); got != want {
			t.Fatalf("GET %d: %q, want %q", i, got, want)
		}
		if got, want := r.reply(), bulk(fmt.Sprint("e", i)); got != want {
			t.Fatalf("ECHO %d: %q, want %q", i, got, want)
		}
	}
}

// Connection-state commands in a pipeline see, and are seen by, their
// neighbours exactly as if executed one by one.
func TestPipelineBarriers(t *testing.T) {
	b := &slowBackend{MapBackend: NewMapBackend(), delay: func(string, []byte) time.Duration { return time.Millisecond }}
	_, addr := startServer(t, b, Options{Password: "pw"})
	r := dialRaw(t, addr)
	steps := []struct{ cmd, want string }{
		{cmd("SET", "a", "1"), "-NOAUTH Authentication required.\r\n"},
		{cmd("GET", "a"), "-NOAUTH Authentication required.\r\n"},
		{cmd("AUTH", "nope"), "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{cmd("GET", "a"), "-NOAUTH Authentication required.\r\n"},
		{cmd("AUTH", "pw"), "+OK\r\n"},
		{cmd("SET", "a", "1"), "+OK\r\n"},
		{cmd("SET", "b", "2"), "+OK\r\n"},
		{cmd("SET", "c", "3"), "+OK\r\n"},
		{cmd("DBSIZE"), ":3\r\n"}, // sees every write before it
		{cmd("GET", "a"), bulk("1")},
		{cmd("GET", "missing"), "$-1\r\n"},
		{cmd("HELLO", "3"), "%7\r\n"},    // prefix only
		{cmd("GET", "missing"), "_\r\n"}, // RESP3 from here on
		{cmd("CLIENT", "SETNAME", "pipe"), "+OK\r\n"},
		{cmd("CLIENT", "GETNAME"), bulk("pipe")},
		{cmd("SET", "a", "10"), "+OK\r\n"},
		{cmd("NOSUCH"), "-ERR unknown command 'NOSUCH', with args beginning with: \r\n"},
		{cmd("GET", "a"), bulk("10")},
		{cmd("GET"), "-ERR wrong number of arguments for 'get' command\r\n"},
		{cmd("RESET"), "+RESET\r\n"},
		{cmd("GET", "a"), "-NOAUTH Authentication required.\r\n"},
		{cmd("HELLO", "2", "AUTH", "default", "pw"), "*14\r\n"},
		{cmd("GET", "missing"), "$-1\r\n"},
		{cmd("DEL", "a", "b"), ":2\r\n"},
		{cmd("QUIT"), "+OK\r\n"},
		{cmd("SET", "after", "quit"), ""},
	}
	var w strings.Builder
	for _, s := range steps {
		w.WriteString(s.cmd)
	}
	r.send(w.String())
	for i, s := range steps {
		if s.want == "" {
			break
		}
		if got := r.reply(); !strings.HasPrefix(got, s.want) {
			t.Fatalf("step %d %q: got %q, want %q", i, s.cmd, got, s.want)
		}
	}
	r.expectClosed()
	if _, found, _ := b.MapBackend.Get(context.Background(), []byte("after")); found {
		t.Fatal("a command after QUIT ran")
	}
}

// A client that pipelines far more than the window without reading gets
// every reply, while the server stops reading instead of buffering.
func TestPipelineBackpressure(t *testing.T) {
	const n = 100_000
	s, addr := startServer(t, nil, Options{})
	s.alwaysConcurrent.Store(true) // else a fast Backend's GETs all run inline
	r := dialRaw(t, addr)
	r.nc.SetDeadline(time.Now().Add(60 * time.Second))
	value := strings.Repeat("x", 1000) // 100 MB of replies: more than socket buffers hold
	r.send(cmd("SET", "k", value))
	if got := r.reply(); got != "+OK\r\n" {
		t.Fatal(got)
	}
	get := cmd("GET", "k")
	sent := make(chan error, 1)
	go func() {
		_, err := r.nc.Write([]byte(strings.Repeat(get, n)))
		sent <- err
	}()
	// Not reading: the server must stall on writing replies and so stop
	// reading and executing commands. Wait for the count to settle.
	var stalled uint64
	for deadline := time.Now().Add(20 * time.Second); ; {
		before := s.Stats().TotalCommands
		time.Sleep(100 * time.Millisecond)
		stalled = s.Stats().TotalCommands
		if stalled == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server kept executing while the client did not read: %d commands", stalled)
		}
	}
	if stalled >= n {
		t.Fatalf("server executed all %d commands while the client did not read", n)
	}
	want := bulk(value)
	for i := range n {
		if got := r.reply(); got != want {
			t.Fatalf("reply %d: %.40q", i, got)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if p := s.peakInFlight.Load(); p > maxInFlight {
		t.Fatalf("%d commands in flight, limit %d", p, maxInFlight)
	}
	t.Logf("stalled after %d of %d commands; peak in flight %d", stalled, n, s.peakInFlight.Load())
}

// A panic in a concurrently executed command closes that connection only.
func TestPipelinePanic(t *testing.T) {
	b := &slowBackend{MapBackend: NewMapBackend(), onSet: func(k []byte) {
		if string(k) == "boom" {
			panic("boom")
		}
	}}
	_, addr := startServer(t, b, Options{})
	r := dialRaw(t, addr)
	r.send(cmd("SET", "a", "1") + cmd("SET", "boom", "1") + cmd("SET", "c", "1") + cmd("PING"))
	for {
		// Replies before the panic may or may not arrive; then EOF.
		if _, err := r.br.ReadString('\n'); err != nil {
			break
		}
	}
	r2 := dialRaw(t, addr)
	r2.send(cmd("PING"))
	if got := r2.reply(); got != "+PONG\r\n" {
		t.Fatal(got)
	}
}

// Close cancels and waits for pipelined commands in flight.
func TestCloseWaitsForPipelinedCommands(t *testing.T) {
	b := &slowBackend{MapBackend: NewMapBackend(), blockUntilDone: true}
	s, addr := startServer(t, b, Options{})
	s.cmds["set"].avgNanos.Store(int64(time.Millisecond)) // SET has been slow: not run inline
	r := dialRaw(t, addr)
	var w strings.Builder
	for i := range 10 {
		w.WriteString(cmd("SET", fmt.Sprint("k", i), "v"))
	}
	r.send(w.String())
	deadline := time.Now().Add(5 * time.Second)
	for b.active.Load() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d commands started", b.active.Load())
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()
	if n := b.active.Load(); n != 0 {
		t.Fatalf("%d backend calls still running after Close", n)
	}
}

// WriteTimeout bounds every write, including those a deep pipeline makes
// before the explicit flush, so a client that stops reading is dropped.
func TestWriteTimeoutOnStalledReader(t *testing.T) {
	s, addr := startServer(t, nil, Options{WriteTimeout: 200 * time.Millisecond})
	r := dialRaw(t, addr)
	value := strings.Repeat("x", 1000)
	r.send(cmd("SET", "k", value))
	r.reply()
	go r.nc.Write([]byte(strings.Repeat(cmd("GET", "k"), 100_000)))
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().ConnectedClients != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection of a client that does not read was not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A long MSET reaches a SetBatcher in bounded batches, in order, and every
// pair is written.
func TestLongMSetBatched(t *testing.T) {
	b := &batchingBackend{slowBackend: &slowBackend{MapBackend: NewMapBackend()}}
	_, addr := startServer(t, b, Options{})
	r := dialRaw(t, addr)
	args := []string{"MSET"}
	for i := range 150 {
		args = append(args, fmt.Sprintf("m%d", i%120), fmt.Sprintf("v%d", i))
	}
	r.send(cmd(args...))
	if got := r.reply(); got != "+OK\r\n" {
		t.Fatalf("MSET: %q", got)
	}
	r.send(cmd("GET", "m5") + cmd("GET", "m119"))
	if got := r.reply(); got != bulk("v125") {
		t.Fatalf("GET m5 (set twice in the MSET): %q, want v125", got)
	}
	if got := r.reply(); got != bulk("v119") {
		t.Fatalf("GET m119: %q", got)
	}
	total := 0
	for _, n := range b.batches {
		if n > maxSetBatch {
			t.Fatalf("a batch of %d pairs, the bound is %d", n, maxSetBatch)
		}
		total += n
	}
	if total != 150 || len(b.batches) < 3 {
		t.Fatalf("batches %v: want 150 pairs in at least 3 batches", b.batches)
	}
}

// While GETs are slow (a cluster's), a pipeline's runs of GETs reach a
// GetBatcher as batches; every GET still sees the SETs before it, a GET the
// backend fails gets its own error, and the replies stay in order.
func TestPipelinedGetsBatchedWhenSlow(t *testing.T) {
	b := &batchingBackend{slowBackend: &slowBackend{MapBackend: NewMapBackend(),
		delay: func(op string, _ []byte) time.Duration {
			if op == "get" || op == "getbatch" {
				return 200 * time.Microsecond
			}
			return 0
		}}}
	_, addr := startServer(t, b, Options{})
	r := dialRaw(t, addr)
	// Lone GETs first, so that GET's moving average learns it is slow.
	for range 20 {
		r.send(cmd("GET", "warm"))
		if got := r.reply(); got != "$-1\r\n" {
			t.Fatalf("GET warm: %q", got)
		}
	}
	var wire strings.Builder
	var want []string
	for i := range 40 {
		k := fmt.Sprintf("g%d", i%10)
		wire.WriteString(cmd("SET", k, fmt.Sprintf("v%d", i)))
		want = append(want, "+OK\r\n")
		for range 3 {
			wire.WriteString(cmd("GET", k))
			want = append(want, bulk(fmt.Sprintf("v%d", i)))
		}
		if i == 20 {
			wire.WriteString(cmd("GET", "fail"))
			want = append(want, "-QUORUM not enough replicas for fail\r\n")
		}
	}
	r.send(wire.String())
	for i, w := range want {
		if got := r.reply(); got != w {
			t.Fatalf("reply %d: got %q, want %q", i, got, w)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := 0
	for _, n := range b.getBatches {
		m = max(m, n)
	}
	if m < 2 {
		t.Fatalf("no GET batch of more than %d reached the backend (batches %v)", m, b.getBatches)
	}
}
