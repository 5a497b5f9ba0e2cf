package storage

// A real-process crash loop. TestCrashLoop re-executes this test binary as a
// child (TestCrashLoopChild with RINGKV_CRASHLOOP_CHILD set). The child
// opens the engine with SyncBatch and tiny memtables and tables, and several
// goroutines write continuously, printing one "a <g> <c>" line to stdout
// after each write is acknowledged. The parent SIGKILLs the child at a
// random moment (right after start, to land in recovery, or 20-400ms into
// the writes, to land in group commits, flushes and compactions), copies
// the directory as the crash left it, opens the copy and checks that every
// acknowledged write is there, and then starts the next child on the
// original directory, which recovers from the real crash state.
//
// Each goroutine's operations are a pure function of (seed, epoch,
// goroutine, counter), so the parent can regenerate exactly what any write
// did, including the one write per goroutine that may have been in flight
// (issued, not acknowledged) when the kill came. Keys belong to one
// goroutine ("w<g>-k<n>"), and every value names its key and its version
// (epoch, counter, index in the batch). After a kill each key must hold
// exactly the state of its last acknowledged write, or the state its
// goroutine's in-flight write gives it; an in-flight batch must be there
// whole or not at all; and no key may exist that no write ever issued.
//
// RINGKV_CRASHLOOP_KILLS sets the number of kills (default 24),
// RINGKV_CRASHLOOP_SEED the seed (default: random, logged).
//
// TestCrashLoopSyncNone runs the same loop with the child's engine in
// SyncNone: nothing is fsynced, so every acknowledged write must survive
// the kill from the operating system's page cache alone (the commit log is
// written through a shared mapping, see wal.NewMappedWriter).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	crashLoopEnvChild = "RINGKV_CRASHLOOP_CHILD"
	crashLoopEnvEpoch = "RINGKV_CRASHLOOP_EPOCH"
	crashLoopEnvSeed  = "RINGKV_CRASHLOOP_SEED"
	crashLoopEnvKills = "RINGKV_CRASHLOOP_KILLS"
	crashLoopEnvSync  = "RINGKV_CRASHLOOP_SYNC"

	crashLoopDefaultKills = 24
	crashLoopWriters      = 4
	crashLoopKeysPerW     = 150
	// crashLoopChildLife bounds how long a child runs if nobody kills it.
	crashLoopChildLife = 60 * time.Second
)

// crashLoopOptions are the child's (and the verifier's) engine options:
// small enough that a few hundred milliseconds of writes flush several
// memtables and compact L0 into L1 and L1 into L2.
func crashLoopOptions(sync SyncMode) *Options {
	return &Options{
		Sync:                sync,
		MemTableSize:        64 << 10,
		L0CompactionTrigger: 2,
		L0SlowdownTrigger:   6,
		L0StopTrigger:       10,
		TargetFileSize:      32 << 10,
		LBaseMaxBytes:       128 << 10,
		LevelMultiplier:     4,
		BlockCacheSize:      256 << 10,
	}
}

// crashLoopOp is one operation of a write; a write is one Set, one Delete or
// a batch of several operations.
type crashLoopOp struct {
	key   string
	value []byte // nil for a delete
}

func crashLoopKey(g, n int) string { return fmt.Sprintf("w%d-k%04d", g, n) }

// crashLoopWrite returns write number c of goroutine g in epoch (child run)
// epoch. It is a pure function so that the parent can regenerate any write.
func crashLoopWrite(seed uint64, epoch, g, c int) []crashLoopOp {
	rng := rand.New(rand.NewPCG(seed, uint64(epoch)<<40|uint64(g)<<32|uint64(c)))
	n := 1
	if rng.IntN(100) < 25 {
		n = 2 + rng.IntN(7) // a batch; it may touch one key twice
	}
	ops := make([]crashLoopOp, n)
	for i := range ops {
		key := crashLoopKey(g, rng.IntN(crashLoopKeysPerW))
		ops[i].key = key
		if rng.IntN(100) < 15 {
			continue // delete
		}
		v := fmt.Appendf(nil, "%s|e=%d|c=%d|i=%d|", key, epoch, c, i)
		pad := 16 + rng.IntN(1500)
		for j := 0; j < pad; j++ {
			v = append(v, 'a'+byte(rng.IntN(26)))
		}
		ops[i].value = v
	}
	return ops
}

// crashLoopState is one key's state: absent (deleted) or a value.
type crashLoopState struct {
	present bool
	value   []byte
}

func (s crashLoopState) equal(o crashLoopState) bool {
	return s.present == o.present && (!s.present || bytes.Equal(s.value, o.value))
}

// String names the state by the version its value carries.
func (s crashLoopState) String() string {
	if !s.present {
		return "absent"
	}
	v := s.value
	if i := bytes.LastIndexByte(v, '|'); i >= 0 {
		v = v[:i]
	}
	if len(v) > 80 {
		v = v[:80]
	}
	return fmt.Sprintf("value %q (%d bytes)", v, len(s.value))
}

// effect is what a write leaves in each key it touches.
func crashLoopEffect(ops []crashLoopOp) map[string]crashLoopState {
	m := make(map[string]crashLoopState, len(ops))
	for _, op := range ops {
		m[op.key] = crashLoopState{present: op.value != nil, value: op.value}
	}
	return m
}

// TestCrashLoopChild is the child process of TestCrashLoop; on its own it
// does nothing.
func TestCrashLoopChild(t *testing.T) {
	dir := os.Getenv(crashLoopEnvChild)
	if dir == "" {
		t.Skip("helper process for TestCrashLoop; runs only when re-executed with " + crashLoopEnvChild + " set")
	}
	os.Exit(crashLoopChild(dir))
}

func crashLoopChild(dir string) int {
	say := func(format string, args ...any) {
		// One write per line: lines of concurrent writers never interleave
		// (a pipe write of at most PIPE_BUF bytes is atomic).
		os.Stdout.Write(fmt.Appendf(nil, format+"\n", args...))
	}
	epoch, err1 := strconv.Atoi(os.Getenv(crashLoopEnvEpoch))
	seed, err2 := strconv.ParseUint(os.Getenv(crashLoopEnvSeed), 10, 64)
	mode, err3 := ParseSyncMode(os.Getenv(crashLoopEnvSync))
	if err1 != nil || err2 != nil || err3 != nil {
		say("fail bad environment: epoch %v, seed %v, sync %v", err1, err2, err3)
		return 2
	}
	// If the parent goes away its end of our stdin closes: stop.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	time.AfterFunc(crashLoopChildLife, func() {
		say("fail not killed after %s", crashLoopChildLife)
		os.Exit(4)
	})

	opts := crashLoopOptions(mode)
	opts.Logf = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "engine: "+format+"\n", args...)
	}
	say("opening")
	db, err := Open(dir, opts)
	if err != nil {
		say("fail open: %v", strings.ReplaceAll(err.Error(), "\n", " "))
		return 2
	}
	say("ready")

	go func() {
		for range time.Tick(10 * time.Millisecond) {
			m := db.Metrics()
			say("m %d %d %d %d", m.Flushes, m.Compactions+m.TrivialMoves, m.ImmutableMemTables, m.Levels[0].Tables)
		}
	}()
	for g := 0; g < crashLoopWriters; g++ {
		go func() {
			b := db.NewBatch()
			for c := 0; ; c++ {
				ops := crashLoopWrite(seed, epoch, g, c)
				var err error
				switch {
				case len(ops) == 1 && ops[0].value != nil:
					err = db.Set([]byte(ops[0].key), ops[0].value)
				case len(ops) == 1:
					err = db.Delete([]byte(ops[0].key))
				default:
					b.Reset()
					for _, op := range ops {
						if op.value != nil {
							b.Set([]byte(op.key), op.value)
						} else {
							b.Delete([]byte(op.key))
						}
					}
					err = db.Apply(b, nil)
				}
				if err != nil {
					say("fail writer %d write %d: %v", g, c, strings.ReplaceAll(err.Error(), "\n", " "))
					os.Exit(2)
				}
				say("a %d %d", g, c)
			}
		}()
	}
	select {}
}

// crashLoopRun is what the parent learned from one child.
type crashLoopRun struct {
	acked     [crashLoopWriters]int // last acknowledged write per goroutine, -1 if none
	ready     bool                  // the child had opened the engine when it was killed
	early     bool                  // the kill was aimed at startup and recovery
	delay     time.Duration
	flushes   int // the child's last metrics report
	compacts  int
	immAtKill int
	openTook  time.Duration // from "opening" to "ready"
	fail      string        // a "fail" line from the child
	protoErr  string
	stderr    string
	exit      string
}

// crashLoopTail keeps the last bytes written to it.
type crashLoopTail struct {
	mu  sync.Mutex
	buf []byte
}

func (w *crashLoopTail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > 64<<10 {
		w.buf = append([]byte(nil), w.buf[len(w.buf)-32<<10:]...)
	}
	return len(p), nil
}

func (w *crashLoopTail) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

func TestCrashLoop(t *testing.T) { runCrashLoop(t, SyncBatch, crashLoopDefaultKills) }

// TestCrashLoopSyncNone: no fsync at all, so what survives a kill is what
// the page cache holds.
func TestCrashLoopSyncNone(t *testing.T) { runCrashLoop(t, SyncNone, crashLoopDefaultKills/2) }

func runCrashLoop(t *testing.T, mode SyncMode, kills int) {
	if runtime.GOOS != "linux" {
		t.Skipf("skipping: the crash loop re-executes the test binary and SIGKILLs it, which it does only on Linux (GOOS=%s)", runtime.GOOS)
	}
	if os.Getenv(crashLoopEnvChild) != "" {
		t.Skip("skipping: running as a crash-loop child")
	}
	if s := os.Getenv(crashLoopEnvKills); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", crashLoopEnvKills, s)
		}
		kills = n
	}
	seed := rand.Uint64()
	if s := os.Getenv(crashLoopEnvSeed); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", crashLoopEnvSeed, s, err)
		}
		seed = n
	}
	t.Logf("seed %d (rerun with %s=%d), %d kills, sync %s", seed, crashLoopEnvSeed, seed, kills, mode)

	root := t.TempDir()
	dir := filepath.Join(root, "db")
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	expect := make(map[string]crashLoopState) // the state every acknowledged write left
	start := time.Now()
	lastOpen := 15 * time.Millisecond // how long the last child took to open the engine
	var totalAcks, earlyKills, killsBeforeReady, killsWithImm, inflightApplied, flushes, compacts int
	for epoch := 1; epoch <= kills; epoch++ {
		// About one kill in four (and always the first, which kills the
		// engine while it creates its directory) is aimed at startup and
		// recovery; the rest land 20-400ms into the writes.
		early := epoch == 1 || rng.IntN(4) == 0
		var delay time.Duration
		if early {
			// Somewhere inside Open, judging by how long the last one took.
			delay = time.Duration(rng.Int64N(int64(lastOpen + 2*time.Millisecond)))
		} else {
			delay = 20*time.Millisecond + time.Duration(rng.IntN(380))*time.Millisecond
		}
		run := crashLoopRunChild(t, dir, mode, seed, epoch, early, delay)
		if run.fail != "" || run.protoErr != "" {
			t.Fatalf("epoch %d: child failed: %s%s (exit: %s)\nchild stderr:\n%s", epoch, run.fail, run.protoErr, run.exit, run.stderr)
		}
		if strings.Contains(run.stderr, "DATA RACE") {
			t.Fatalf("epoch %d: the child found a data race:\n%s", epoch, run.stderr)
		}
		if early {
			earlyKills++
		}
		if run.ready {
			lastOpen = run.openTook
		}
		if !run.ready {
			killsBeforeReady++
		}
		if run.immAtKill > 0 {
			killsWithImm++
		}
		flushes += run.flushes
		compacts += run.compacts
		acks := 0
		for g := range run.acked {
			acks += run.acked[g] + 1
			for c := 0; c <= run.acked[g]; c++ {
				for k, s := range crashLoopEffect(crashLoopWrite(seed, epoch, g, c)) {
					expect[k] = s
				}
			}
		}
		totalAcks += acks
		applied := crashLoopVerify(t, filepath.Join(root, "verify"), dir, seed, epoch, &run, expect)
		inflightApplied += applied
		t.Logf("epoch %2d: killed after %-8s (%s, opened=%v in %s) acks=%-5d in-flight found=%d child flushes=%d compactions=%d imm=%d",
			epoch, run.delay.Round(100*time.Microsecond), map[bool]string{true: "early", false: "writes"}[early], run.ready, run.openTook.Round(100*time.Microsecond),
			acks, applied, run.flushes, run.compacts, run.immAtKill)
	}
	t.Logf("%d kills in %s (%d aimed at startup, %d before the engine was open, %d with a memtable waiting for its flush); "+
		"%d acknowledged writes checked, %d in-flight writes found applied; children flushed %d memtables and ran %d compactions",
		kills, time.Since(start).Round(time.Millisecond), earlyKills, killsBeforeReady, killsWithImm,
		totalAcks, inflightApplied, flushes, compacts)
}

// crashLoopRunChild starts a child on dir, kills it with SIGKILL after delay
// (counted from "ready", or from "opening" if early) and returns what its
// stdout acknowledged.
func crashLoopRunChild(t *testing.T, dir string, mode SyncMode, seed uint64, epoch int, early bool, delay time.Duration) crashLoopRun {
	t.Helper()
	run := crashLoopRun{early: early, delay: delay}
	for g := range run.acked {
		run.acked[g] = -1
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLoopChild$", "-test.count=1")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RINGKV_CRASHLOOP_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		crashLoopEnvChild+"="+dir,
		crashLoopEnvEpoch+"="+strconv.Itoa(epoch),
		crashLoopEnvSeed+"="+strconv.FormatUint(seed, 10),
		crashLoopEnvSync+"="+mode.String(),
		"GORACE=halt_on_error=1",
	)
	stderr := &crashLoopTail{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	pid := cmd.Process.Pid
	waited := false
	defer func() {
		// On any failure (or panic) the child must not outlive the test.
		if !waited {
			syscall.Kill(pid, syscall.SIGKILL)
			cmd.Wait()
		}
	}()

	opening := make(chan struct{})
	ready := make(chan struct{})
	done := make(chan struct{})
	var mu sync.Mutex // guards run while the reader runs
	go func() {
		defer close(done)
		r := bufio.NewReader(stdout)
		var sawOpening, sawReady bool
		var openedAt time.Time
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// A line cut short by the kill acknowledges nothing.
				return
			}
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			mu.Lock()
			switch f[0] {
			case "opening":
				if !sawOpening {
					sawOpening = true
					openedAt = time.Now()
					close(opening)
				}
			case "ready":
				if !sawReady {
					sawReady = true
					run.ready = true
					run.openTook = time.Since(openedAt)
					close(ready)
				}
			case "a":
				g, err1 := strconv.Atoi(f[1])
				c, err2 := strconv.Atoi(f[len(f)-1])
				switch {
				case len(f) != 3 || err1 != nil || err2 != nil || g < 0 || g >= crashLoopWriters:
					run.protoErr = fmt.Sprintf("bad ack line %q", line)
				case c != run.acked[g]+1:
					run.protoErr = fmt.Sprintf("writer %d acknowledged write %d after %d", g, c, run.acked[g])
				default:
					run.acked[g] = c
				}
			case "m":
				if len(f) == 5 {
					run.flushes, _ = strconv.Atoi(f[1])
					run.compacts, _ = strconv.Atoi(f[2])
					run.immAtKill, _ = strconv.Atoi(f[3])
				}
			case "fail":
				run.fail = strings.TrimSpace(line)
			}
			mu.Unlock()
		}
	}()

	startWait := opening
	if !early {
		startWait = ready
	}
	select {
	case <-startWait:
	case <-done:
		// The child's stdout closed before it got going: it failed.
	case <-time.After(30 * time.Second):
		mu.Lock()
		run.protoErr = "child did not start within 30s"
		mu.Unlock()
	}
	select {
	case <-time.After(delay):
	case <-done:
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill child %d: %v", pid, err)
	}
	<-done // the pipe holds every line written before the kill
	err = cmd.Wait()
	waited = true
	mu.Lock()
	defer mu.Unlock()
	run.stderr = stderr.String()
	run.exit = fmt.Sprint(err)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return run
		}
	}
	if run.fail == "" && run.protoErr == "" {
		run.protoErr = fmt.Sprintf("child ended on its own (%v) before it was killed", err)
	}
	return run
}

// crashLoopVerify copies dir as the crash left it, opens the copy and checks
// it against expect and the writes in flight at the kill. It folds the
// in-flight writes that survived into expect and returns how many did.
func crashLoopVerify(t *testing.T, scratch, dir string, seed uint64, epoch int, run *crashLoopRun, expect map[string]crashLoopState) int {
	t.Helper()
	// Verify on a copy so that the next child recovers from the real crash
	// state, not from the state our recovery would leave.
	if err := os.RemoveAll(scratch); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(scratch, e.Name()), data, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, fmt.Sprintf("%s(%d)", e.Name(), len(data)))
		}
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	db, err := Open(scratch, crashLoopOptions(SyncBatch))
	if err != nil {
		t.Fatalf("epoch %d: open after kill: %v\nfiles the crash left: %s\nchild stderr:\n%s", epoch, err, strings.Join(files, " "), run.stderr)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Errorf("epoch %d: close: %v", epoch, err)
		}
	}()

	// Everything the engine holds, by a full scan.
	got := make(map[string][]byte)
	it := db.NewIter(nil)
	for ok := it.First(); ok; ok = it.Next() {
		got[string(it.Key())] = bytes.Clone(it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatalf("epoch %d: scan: %v", epoch, err)
	}
	state := func(k string) crashLoopState {
		v, ok := got[k]
		return crashLoopState{present: ok, value: v}
	}

	var problems []string
	report := func(format string, args ...any) {
		if len(problems) < 30 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}

	// The write each goroutine may have had in flight: the one after its
	// last acknowledged write. It must be there whole or not at all.
	inflight := make(map[string]bool)
	applied := 0
	var updates []map[string]crashLoopState
	for g := range run.acked {
		c := run.acked[g] + 1
		eff := crashLoopEffect(crashLoopWrite(seed, epoch, g, c))
		var asOld, asNew []string
		for k, s := range eff {
			inflight[k] = true
			old := expect[k] // the zero state (absent) if never written
			cur := state(k)
			isOld, isNew := cur.equal(old), cur.equal(s)
			switch {
			case isOld && isNew:
			case isOld:
				asOld = append(asOld, k)
			case isNew:
				asNew = append(asNew, k)
			default:
				report("key %s: holds %s; its last acknowledged write (writer %d write %d or earlier) left %s, and the write in flight (writer %d write %d) would leave %s",
					k, cur, g, c-1, old, g, c, s)
			}
		}
		if len(asOld) > 0 && len(asNew) > 0 {
			sort.Strings(asOld)
			sort.Strings(asNew)
			report("writer %d write %d (in flight, %d ops) is torn: keys %v hold its values, keys %v do not", g, c, len(eff), asNew, asOld)
		}
		if len(asNew) > 0 {
			applied++
			updates = append(updates, eff)
		}
	}

	// Every other key must hold exactly what its last acknowledged write
	// left.
	keys := make([]string, 0, len(expect))
	for k := range expect {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lost := 0
	for _, k := range keys {
		if inflight[k] {
			continue
		}
		if want, cur := expect[k], state(k); !cur.equal(want) {
			lost++
			report("key %s: acknowledged write left %s, recovered %s", k, want, cur)
		}
	}
	// No key that no write issued.
	for k := range got {
		if _, ok := expect[k]; !ok && !inflight[k] {
			report("key %s holds %s but no write ever set it", k, state(k))
		}
	}
	// Point reads agree with the scan.
	for _, k := range keys {
		v, err := db.Get([]byte(k))
		cur := crashLoopState{present: err == nil, value: v}
		if err != nil && !errors.Is(err, ErrNotFound) {
			report("get %s: %v", k, err)
		} else if !cur.equal(state(k)) {
			report("key %s: Get returns %s but a scan finds %s", k, cur, state(k))
		}
	}
	if len(problems) > 0 {
		m := db.Metrics()
		t.Fatalf("epoch %d (seed %d): recovered state is wrong after a SIGKILL %s after %s (%d keys recovered, %d keys acknowledged, %d differ from their acknowledged write):\n  %s\nfiles the crash left: %s\nrecovered tree: %v\nchild stderr (tail):\n%s",
			epoch, seed, run.delay, map[bool]string{true: "opening", false: "ready"}[run.early], len(got), len(expect), lost,
			strings.Join(problems, "\n  "), strings.Join(files, " "), m, run.stderr)
	}
	for _, eff := range updates {
		for k, s := range eff {
			expect[k] = s
		}
	}
	return applied
}
