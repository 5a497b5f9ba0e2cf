package storage

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/storage/vfs/errorfs"
)

// The error-injection tests run a deterministic workload on errorfs over
// the strict in-memory filesystem, failing one chosen filesystem operation
// (or every operation from it on), and check what the engine promises:
// it never panics, a failed write is reported and no later write is
// acknowledged, errors say what failed, and after a crash (or a plain
// restart) every acknowledged write is there and nothing else is.

// injOptions make the workload's filesystem operations deterministic: the
// memtable never fills, background compaction never starts, and the
// workload flushes and compacts explicitly (and waits for it).
func injOptions(fs vfs.FS) *Options {
	return &Options{
		FS:                      fs,
		Sync:                    SyncBatch,
		MemTableSize:            1 << 20,
		TargetFileSize:          2 << 10,
		BlockSize:               512,
		L0CompactionTrigger:     1 << 20,
		L0CompactionFileTrigger: 1 << 20,
		L0SlowdownTrigger:       1 << 20,
		L0StopTrigger:           1 << 20,
		LBaseMaxBytes:           1 << 50,
	}
}

// recordingInjector passes each operation to an inner injector and records
// the ones it failed.
type recordingInjector struct {
	inner  errorfs.Injector
	mu     sync.Mutex
	failed []errorfs.Op
}

func (r *recordingInjector) MaybeError(op errorfs.Op) error {
	err := r.inner.MaybeError(op)
	if err != nil {
		r.mu.Lock()
		r.failed = append(r.failed, op)
		r.mu.Unlock()
	}
	return err
}

// failedWrites reports whether an operation that changes the disk (create,
// write, sync, rename) has failed.
func (r *recordingInjector) failedWrites() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, op := range r.failed {
		switch op.Kind {
		case errorfs.OpCreate, errorfs.OpWrite, errorfs.OpSync, errorfs.OpRename:
			return true
		}
	}
	return false
}

func (r *recordingInjector) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for i, op := range r.failed {
		if i == 4 {
			s = append(s, fmt.Sprintf("... (%d in all)", len(r.failed)))
			break
		}
		s = append(s, fmt.Sprintf("%s %s", op.Kind, op.Path))
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// injWorkloadWrites is the workload's fixed list of writes.
var injWorkloadWrites = func() []ftWrite {
	rng := rand.New(rand.NewPCG(5, 6))
	var hist []ftWrite
	for i := range 90 {
		key := func() string { return fmt.Sprintf("k%02d", rng.IntN(30)) }
		val := func(j int) string {
			return fmt.Sprintf("v%d.%d-%s", i, j, strings.Repeat("x", rng.IntN(200)))
		}
		switch i % 5 {
		case 3:
			hist = append(hist, ftWrite{{key: key(), del: true}})
		case 4:
			hist = append(hist, ftWrite{{key: key(), value: val(0)}, {key: key(), del: true}, {key: key(), value: val(2)}})
		default:
			hist = append(hist, ftWrite{{key: key(), value: val(0)}})
		}
	}
	return hist
}()

var injKeys = func() []string {
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("k%02d", i))
	}
	return append(keys, injProbeKey)
}()

// injProbeKey is written after a failure, when the engine must refuse it; it
// must never be found later.
const injProbeKey = "probe"

// injResult is what a workload run did.
type injResult struct {
	acked      int  // writes acknowledged: hist[:acked]
	failedOne  bool // hist[acked] was attempted and failed (it may or may not be durable)
	steps      int  // workload steps completed
	stoppedBy  string
	dbOpen     *DB // the engine, if still open
	injections string
}

// runInjWorkload runs the workload on fs:
//
//	open; 25 writes; flush; 25 writes; close; open; 20 writes; compact;
//	20 writes; close
//
// stopping at the first failure. It checks the rules that hold during the
// run and reports what was acknowledged.
func runInjWorkload(t *testing.T, fs vfs.FS, inj *recordingInjector, what string) injResult {
	t.Helper()
	var res injResult
	hist := injWorkloadWrites
	var db *DB
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: injected %s: %s", what, inj, fmt.Sprintf(format, args...))
	}
	// checkErr checks an error a workload step returned.
	checkErr := func(step string, err error, mustBeFailed bool) {
		t.Helper()
		if !errors.Is(err, errorfs.ErrInjected) {
			fail("%s: error does not wrap the injected error: %v", step, err)
		}
		if mustBeFailed && !errors.Is(err, ErrFailed) {
			fail("%s: error does not wrap ErrFailed: %v", step, err)
		}
	}
	// afterFailure checks that the engine acknowledges nothing once a write
	// to the disk failed.
	afterFailure := func(step string) {
		t.Helper()
		err := db.Set([]byte(injProbeKey), []byte("must not be acknowledged"))
		if err == nil {
			fail("after %s: a write was acknowledged after a failed disk write", step)
		}
		if !errors.Is(err, ErrFailed) {
			fail("after %s: a write after a failed disk write returned %v, not ErrFailed", step, err)
		}
	}
	open := func(step string) bool {
		var err error
		db, err = Open("db", injOptions(fs))
		if err != nil {
			checkErr(step, err, false)
			db = nil
			res.stoppedBy = step + ": " + err.Error()
			return false
		}
		return true
	}
	writes := func(from, to int) bool {
		for i := from; i < to; i++ {
			if err := hist[i].apply(db); err != nil {
				checkErr(fmt.Sprintf("write %d", i), err, true)
				res.failedOne = true
				res.stoppedBy = fmt.Sprintf("write %d: %v", i, err)
				afterFailure(fmt.Sprintf("failed write %d", i))
				return false
			}
			res.acked = i + 1
			if inj.failedWrites() {
				// The injected failure hit something the write did not
				// need (say, removing an old log); the engine may go on
				// only if nothing it relies on failed. Every create,
				// write, sync or rename matters.
				afterFailure(fmt.Sprintf("write %d (after an injected disk write failure)", i))
				res.stoppedBy = "failed disk write"
				return false
			}
		}
		return true
	}
	control := func(step string, f func() error) bool {
		if err := f(); err != nil {
			checkErr(step, err, true)
			res.stoppedBy = step + ": " + err.Error()
			afterFailure(step)
			return false
		}
		if inj.failedWrites() {
			afterFailure(step + " (after an injected disk write failure)")
			res.stoppedBy = "failed disk write"
			return false
		}
		return true
	}
	closeDB := func(step string) bool {
		err := db.Close()
		db = nil
		if err != nil {
			// Close syncs the log; everything acknowledged was synced
			// already, so a failure loses nothing, but it must be reported.
			checkErr(step, err, false)
			res.stoppedBy = step + ": " + err.Error()
			return false
		}
		return true
	}
	ok := open("open 1") &&
		writes(0, 25) &&
		control("flush", db.Flush) &&
		writes(25, 50) &&
		closeDB("close 1") &&
		open("open 2") &&
		writes(50, 70) &&
		control("compact", func() error { return db.Compact() }) &&
		writes(70, 90) &&
		closeDB("close 2")
	_ = ok
	res.dbOpen = db
	res.injections = inj.String()
	return res
}

// verifyInj opens fs without injection and checks that it holds the model
// after res.acked writes, or (if a write failed) after that one too.
func verifyInj(t *testing.T, fs vfs.FS, res injResult, what string) {
	t.Helper()
	what = t.Name() + " " + what
	db, err := Open("db", injOptions(fs))
	if err != nil {
		t.Fatalf("%s: reopen without injection (injected %s; workload stopped by %s): %v",
			what, res.injections, res.stoppedBy, err)
	}
	state, err := ftDump(db, injKeys)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("%s: read state: %v", what, err)
	}
	if _, ok := state[injProbeKey]; ok {
		t.Fatalf("%s: a write the engine refused (after a failure) is in the recovered state (injected %s)", what, res.injections)
	}
	hi := res.acked
	if res.failedOne {
		hi++
	}
	if ftMatchPrefix(injWorkloadWrites, res.acked, hi, state) < 0 {
		t.Fatalf("%s: recovered state is not the model after %d..%d writes (injected %s; workload stopped by %s):\n%s",
			what, res.acked, hi, res.injections, res.stoppedBy, ftDiff(state, ftModelAt(injWorkloadWrites, res.acked)))
	}
}

// injRun runs the workload with inj and verifies the result twice: on the
// disk a machine crash would leave, and on the disk as it is (a process
// restart). It is meant to run as its own subtest.
func injRun(t *testing.T, inj errorfs.Injector, partial bool) injResult {
	t.Helper()
	strict := vfs.NewStrictMem()
	rec := &recordingInjector{inner: inj}
	var opts []errorfs.Option
	if partial {
		opts = append(opts, errorfs.WithPartialWrites(func(op errorfs.Op) int { return op.Len / 2 }))
	}
	res := runInjWorkload(t, errorfs.Wrap(strict, rec, opts...), rec, t.Name())
	crashed := strict.CrashClone()
	if res.dbOpen != nil {
		res.dbOpen.Close() // may fail: the disk may be dead
	}

	verifyInj(t, crashed, res, "after a crash")
	verifyInj(t, strict, res, "after a restart")
	return res
}

// TestErrorInjectionSweep fails each filesystem operation of the workload in
// turn, as a dead disk (every operation from the n-th on fails) and as a
// transient error (only the n-th fails), and separately sweeps the writes,
// syncs, creates and renames alone, with failing writes torn (half
// written).
func TestErrorInjectionSweep(t *testing.T) {
	var n int64
	t.Run("count", func(t *testing.T) {
		counter := errorfs.Counter()
		res := injRun(t, counter, false)
		if res.acked != len(injWorkloadWrites) || res.stoppedBy != "" {
			t.Fatalf("workload without injection: acked %d of %d, stopped by %q", res.acked, len(injWorkloadWrites), res.stoppedBy)
		}
		n = counter.Count()
	})
	if n == 0 {
		t.Fatal("no filesystem operations counted")
	}
	stride := int64(1)
	if testing.Short() {
		stride = 3
	}
	var mu sync.Mutex
	stops := map[string]int{}
	run := func(name string, inj errorfs.Injector, partial bool) {
		t.Run(name, func(t *testing.T) {
			r := injRun(t, inj, partial)
			mu.Lock()
			stops[firstWord(r.stoppedBy)]++
			mu.Unlock()
		})
	}
	for i := int64(0); i <= n; i += stride {
		run(fmt.Sprintf("all/dies-at-%03d", i), errorfs.OnIndex(i), false)
		run(fmt.Sprintf("all/once-at-%03d", i), errorfs.OnIndexOnce(i), false)
	}
	for _, kind := range []errorfs.OpKind{errorfs.OpWrite, errorfs.OpSync, errorfs.OpCreate, errorfs.OpRename} {
		c := errorfs.Counter(kind)
		run(kind.String()+"/count", c, true)
		for i := int64(0); i <= c.Count(); i += stride {
			run(fmt.Sprintf("%s/dies-at-%03d", kind, i), errorfs.OnIndex(i, kind), true)
			run(fmt.Sprintf("%s/once-at-%03d", kind, i), errorfs.OnIndexOnce(i, kind), true)
		}
	}
	t.Logf("workload makes %d filesystem operations; runs stopped by: %v", n, stops)
}

func firstWord(s string) string {
	if s == "" {
		return "(completed)"
	}
	if i := strings.IndexAny(s, " :"); i > 0 {
		return s[:i]
	}
	return s
}

// TestErrorInjectionDiskFull fills the disk at various points: writes must
// fail with an error wrapping ENOSPC (and ErrFailed), nothing more is
// acknowledged, and every acknowledged write survives a reopen on a bigger
// disk.
func TestErrorInjectionDiskFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	hist := crashGenWrites(rng, "k", 200, 3000)
	caps := []int64{0, 100, 1 << 10, 8 << 10, 30 << 10, 100 << 10, 250 << 10, 600 << 10}
	for _, capacity := range caps {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			strict := vfs.NewStrictMem()
			full := errorfs.DiskFull(capacity)
			fs := errorfs.Wrap(strict, full)
			db, err := Open("db", crashTestOptions(fs))
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("open on a full disk: error does not wrap ENOSPC: %v", err)
				}
				t.Logf("open failed: %v", err)
				return
			}
			acked := 0
			var werr error
			for i, w := range hist {
				if werr = w.apply(db); werr != nil {
					break
				}
				acked = i + 1
			}
			if werr == nil {
				t.Fatalf("%d writes (%d bytes) fit on a disk of %d bytes", acked, full.Used(), capacity)
			}
			if !errors.Is(werr, syscall.ENOSPC) || !errors.Is(werr, ErrFailed) {
				t.Fatalf("write on a full disk: error does not wrap ENOSPC and ErrFailed: %v", werr)
			}
			if err := db.Set([]byte(injProbeKey), []byte("x")); !errors.Is(err, ErrFailed) {
				t.Fatalf("write after the disk filled: %v, want ErrFailed", err)
			}
			t.Logf("%d writes acknowledged; then: %v", acked, werr)
			crashed := strict.CrashClone()
			db.Close()
			full.SetCapacity(1 << 62) // a bigger disk
			for _, c := range []struct {
				what string
				fs   vfs.FS
			}{{"after a crash", crashed}, {"after a restart", fs}} {
				db, err := Open("db", crashTestOptions(c.fs))
				if err != nil {
					t.Fatalf("%s: reopen on a bigger disk: %v", c.what, err)
				}
				state, err := ftDump(db, nil)
				if cerr := db.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatalf("%s: %v", c.what, err)
				}
				if _, ok := state[injProbeKey]; ok {
					t.Fatalf("%s: a refused write is present", c.what)
				}
				if k := ftMatchPrefix(hist, acked, acked+1, state); k < 0 {
					t.Fatalf("%s: state is not the model after %d (or %d) writes:\n%s",
						c.what, acked, acked+1, ftDiff(state, ftModelAt(hist, acked)))
				}
			}
		})
	}
}

// onceInjector fails the first operation matching pred after it is armed.
type onceInjector struct {
	pred  func(op errorfs.Op) bool
	armed atomic.Bool
	fired atomic.Bool
}

func (o *onceInjector) MaybeError(op errorfs.Op) error {
	if o.armed.Load() && o.pred(op) && o.fired.CompareAndSwap(false, true) {
		return fmt.Errorf("%w (test)", errorfs.ErrInjected)
	}
	return nil
}

// TestOpenParentDirSyncFailure: when Open cannot sync the directory that
// holds the engine's directory, it must fail (and a retry must sync it), or
// else writes it acknowledges vanish with the directory in a crash.
func TestOpenParentDirSyncFailure(t *testing.T) {
	for _, kind := range []errorfs.OpKind{errorfs.OpOpen, errorfs.OpSync} {
		t.Run(kind.String(), func(t *testing.T) {
			strict := vfs.NewStrictMem()
			inj := &onceInjector{pred: func(op errorfs.Op) bool { return op.Kind == kind && op.Dir && op.Path != "db" }}
			inj.armed.Store(true)
			db, err := Open("db", injOptions(errorfs.Wrap(strict, inj)))
			if !inj.fired.Load() {
				t.Fatal("Open never opened or synced the parent directory")
			}
			if err != nil {
				t.Logf("first open: %v", err)
				if db, err = Open("db", injOptions(strict)); err != nil {
					t.Fatalf("retry: %v", err)
				}
			}
			if err := db.Set([]byte("k"), []byte("v")); err != nil {
				t.Fatal(err)
			}
			crashed := strict.CrashClone()
			db.Close()
			db, err = Open("db", injOptions(crashed))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
				t.Fatalf("acknowledged write lost in a crash: %q, %v", v, err)
			}
		})
	}
}

// TestFailedFirstOpenCanBeRetried: an Open of a new directory that fails
// part way (any single failed operation) must leave a directory that a
// later Open accepts.
func TestFailedFirstOpenCanBeRetried(t *testing.T) {
	counter := errorfs.Counter()
	db, err := Open("db", injOptions(errorfs.Wrap(vfs.NewStrictMem(), counter)))
	if err != nil {
		t.Fatal(err)
	}
	n := counter.Count()
	db.Close()
	for i := range n {
		strict := vfs.NewStrictMem()
		db, err := Open("db", injOptions(errorfs.Wrap(strict, errorfs.OnIndexOnce(i))))
		if err == nil {
			db.Close()
			continue
		}
		if db, err = Open("db", injOptions(strict)); err != nil {
			t.Fatalf("first open failed at operation %d; a second open fails: %v", i, err)
		}
		if err := db.Set([]byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
}

// TestManifestSyncFailureKeepsTables: a flush or compaction whose manifest
// sync fails fails the engine; the edit may still be in the manifest file
// (written, not synced), so a restart must find every table it names.
func TestManifestSyncFailureKeepsTables(t *testing.T) {
	for _, step := range []string{"flush", "compact"} {
		t.Run(step, func(t *testing.T) {
			strict := vfs.NewStrictMem()
			inj := &onceInjector{pred: func(op errorfs.Op) bool {
				return op.Kind == errorfs.OpSync && strings.Contains(op.Path, "MANIFEST-")
			}}
			db, err := Open("db", injOptions(errorfs.Wrap(strict, inj)))
			if err != nil {
				t.Fatal(err)
			}
			hist := injWorkloadWrites
			for i, w := range hist[:40] {
				if err := w.apply(db); err != nil {
					t.Fatal(i, err)
				}
				if i == 20 && step == "compact" {
					if err := db.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if step == "compact" {
				if err := db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			inj.armed.Store(true)
			if step == "flush" {
				err = db.Flush()
			} else {
				err = db.Compact()
			}
			if !errors.Is(err, ErrFailed) || !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("%s with a failing manifest sync: %v", step, err)
			}
			db.Close()
			db, err = Open("db", injOptions(strict))
			if err != nil {
				t.Fatalf("restart after a failed manifest sync: %v", err)
			}
			defer db.Close()
			state, err := ftDump(db, injKeys)
			if err != nil {
				t.Fatal(err)
			}
			if want := ftModelAt(hist, 40); !maps.Equal(state, want) {
				t.Fatalf("state after restart:\n%s", ftDiff(state, want))
			}
		})
	}
}
