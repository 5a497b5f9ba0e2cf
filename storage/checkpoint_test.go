package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/storage/vfs/errorfs"
)

// checkpointOptions: small memtables and tables, so that flushes and
// compactions run all the time while a checkpoint is taken.
func checkpointOptions(fs vfs.FS) *Options {
	o := crashTestOptions(fs)
	o.Sync = SyncNone // acknowledged writes are in the memtable: enough here
	return o
}

func ckKey(i int) []byte   { return fmt.Appendf(nil, "key%05d", i) }
func ckValue(i int) []byte { return fmt.Appendf(nil, "value-%05d-%s", i, strings.Repeat("x", i%200)) }
func ckLate(i int) []byte  { return fmt.Appendf(nil, "late%06d", i) }

// fillForCheckpoint writes n keys and deletes every seventh.
func fillForCheckpoint(t *testing.T, db *DB, n int) {
	t.Helper()
	for i := range n {
		if err := db.Set(ckKey(i), ckValue(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 7 {
		if err := db.Delete(ckKey(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// checkCheckpointHolds opens the checkpoint (on fs) and checks every key of
// fillForCheckpoint, then that the late keys it holds are 0..k-1 for some
// k >= lateAcked (a prefix, and at least what was acknowledged before the
// checkpoint began). It returns k.
func checkCheckpointHolds(t *testing.T, fs vfs.FS, dir string, n, lateAcked int) int {
	t.Helper()
	cp, err := Open(dir, checkpointOptions(fs))
	if err != nil {
		t.Fatalf("open checkpoint %s: %v", dir, err)
	}
	defer cp.Close()
	for i := range n {
		v, err := cp.Get(ckKey(i))
		if i%7 == 0 {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("checkpoint: deleted key %s: %q %v", ckKey(i), v, err)
			}
			continue
		}
		if err != nil || string(v) != string(ckValue(i)) {
			t.Fatalf("checkpoint: key %s: %q %v", ckKey(i), v, err)
		}
	}
	it := cp.NewIter(&IterOptions{LowerBound: []byte("late"), UpperBound: []byte("latf")})
	k := 0
	for ok := it.First(); ok; ok = it.Next() {
		if string(it.Key()) != string(ckLate(k)) {
			t.Fatalf("checkpoint: late keys are not a prefix of the writes: found %s where %s was expected", it.Key(), ckLate(k))
		}
		k++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if k < lateAcked {
		t.Fatalf("checkpoint holds %d late writes, but %d were acknowledged before it began", k, lateAcked)
	}
	// The checkpoint is an engine of its own: it takes writes.
	if err := cp.Set([]byte("after"), []byte("x")); err != nil {
		t.Fatalf("write to the opened checkpoint: %v", err)
	}
	return k
}

// A checkpoint taken while a writer keeps writing opens as an engine and
// holds every write acknowledged before it began, and a prefix of the
// rest; the tables are hard links of the engine's.
func TestCheckpointWhileWriting(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "db"), checkpointOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 3000
	fillForCheckpoint(t, db, n)

	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var writeErr error
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.Set(ckLate(i), ckValue(i)); err != nil {
				writeErr = err
				return
			}
			acked.Store(int64(i + 1))
		}
	}()
	for acked.Load() < 500 {
		// Let the writer get going, so the checkpoint races it.
		if writeErr != nil {
			break
		}
		runtime.Gosched()
	}
	before := int(acked.Load())
	cpDir := filepath.Join(dir, "cp")
	info, err := db.Checkpoint(cpDir)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	if info.Tables == 0 || info.Linked != info.Tables || info.Copied != 0 || info.Bytes == 0 {
		t.Fatalf("checkpoint info: %+v", info)
	}
	// The tables are links of the engine's files (while they are still
	// there: compaction may have removed some since).
	names, _ := os.ReadDir(cpDir)
	same := 0
	for _, e := range names {
		if !strings.HasSuffix(e.Name(), ".sst") {
			continue
		}
		a, err1 := os.Stat(filepath.Join(cpDir, e.Name()))
		b, err2 := os.Stat(filepath.Join(dir, "db", e.Name()))
		if err1 == nil && err2 == nil && os.SameFile(a, b) {
			same++
		}
	}
	if same == 0 {
		t.Fatalf("no table of the checkpoint is a hard link of the engine's")
	}
	k := checkCheckpointHolds(t, vfs.Default, cpDir, n, before)
	t.Logf("checkpoint: %d tables, %d bytes, %d late writes of %d acknowledged before, %d at the end, in %s",
		info.Tables, info.Bytes, k, before, acked.Load(), info.Duration)

	// The engine is untouched by writes to the opened checkpoint.
	if _, err := db.Get([]byte("after")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a write to the checkpoint shows in the engine: %v", err)
	}
}

// A compaction that replaces every table of the checkpoint's version after
// the version was taken (and before the tables are linked) cannot break it:
// the version's reference keeps the files.
func TestCheckpointRacingCompaction(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "db"), checkpointOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 2000
	fillForCheckpoint(t, db, n)
	// Nothing in L0 and the table set fixed, then a rewrite of every key:
	// the compaction in the hook replaces the tables the checkpoint took.
	var hookErr error
	removed := 0
	checkpointTestHook = func() {
		db.mu.Lock()
		var nums []uint64
		for level := range db.current.levels {
			for _, f := range db.current.levels[level] {
				nums = append(nums, f.meta.Num)
			}
		}
		db.mu.Unlock()
		for i := 0; i < n; i++ {
			if i%7 != 0 {
				if err := db.Set(ckKey(i), []byte("newer")); err != nil {
					hookErr = err
					return
				}
			}
		}
		if err := db.Compact(); err != nil {
			hookErr = err
			return
		}
		db.mu.Lock()
		for _, num := range nums {
			if f, _ := db.current.find(num); f == nil {
				removed++
			}
		}
		db.mu.Unlock()
	}
	defer func() { checkpointTestHook = nil }()
	cpDir := filepath.Join(dir, "cp")
	info, err := db.Checkpoint(cpDir)
	if err != nil {
		t.Fatal(err)
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if removed == 0 {
		t.Fatalf("the compaction replaced none of the checkpoint's tables: the test proves nothing")
	}
	t.Logf("%d tables of the checkpoint's version left the engine's version before they were linked; %d tables in the checkpoint", removed, info.Tables)
	// The checkpoint holds the values before the rewrite.
	checkCheckpointHolds(t, vfs.Default, cpDir, n, 0)
	// The engine has the rewrite, and the tables only the checkpoint held
	// are gone from its directory once released.
	if v, err := db.Get(ckKey(1)); err != nil || string(v) != "newer" {
		t.Fatalf("engine after the compaction: %q %v", v, err)
	}
}

// Checkpoints taken in a loop while compactions and writes run in the
// background all open and hold what was written before them.
func TestCheckpointLoopWithBackgroundCompaction(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "db"), checkpointOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 1500
	fillForCheckpoint(t, db, n)
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.Set(ckLate(i), ckValue(i)); err != nil {
				errs <- err
				return
			}
			acked.Store(int64(i + 1))
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.Compact(); err != nil {
				errs <- err
				return
			}
		}
	}()
	for i := range 5 {
		before := int(acked.Load())
		cpDir := filepath.Join(dir, fmt.Sprintf("cp%d", i))
		if _, err := db.Checkpoint(cpDir); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		checkCheckpointHolds(t, vfs.Default, cpDir, n, before)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// A directory that exists and holds anything is refused, and nothing is
// written into it; an empty one is taken; the engine's own directory is
// refused.
func TestCheckpointRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "db"), checkpointOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fillForCheckpoint(t, db, 100)

	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "precious"), []byte("keep me"), 0o644)
	_, err = db.Checkpoint(full)
	if !errors.Is(err, ErrCheckpointDirNotEmpty) || !strings.Contains(err.Error(), "precious") {
		t.Fatalf("checkpoint into a non-empty directory: %v", err)
	}
	if names, _ := os.ReadDir(full); len(names) != 1 {
		t.Fatalf("the refused directory was changed: %v", names)
	}
	if _, err := db.Checkpoint(filepath.Join(dir, "db")); err == nil {
		t.Fatal("checkpoint into the engine's own directory accepted")
	}

	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	if _, err := db.Checkpoint(empty); err != nil {
		t.Fatalf("checkpoint into an empty directory: %v", err)
	}
	// Taken once, it is not empty any more.
	if _, err := db.Checkpoint(empty); !errors.Is(err, ErrCheckpointDirNotEmpty) {
		t.Fatalf("second checkpoint into the same directory: %v", err)
	}
	checkCheckpointHolds(t, vfs.Default, empty, 100, 0)
}

// When hard links fail (another filesystem: EXDEV), the tables are copied,
// and the checkpoint is as good.
func TestCheckpointCopiesWhenLinksFail(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(filepath.Join(dir, "db"), checkpointOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fillForCheckpoint(t, db, 1000)
	links := 0
	osLink = func(oldname, newname string) error {
		links++
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EXDEV}
	}
	defer func() { osLink = os.Link }()
	cpDir := filepath.Join(dir, "cp")
	info, err := db.Checkpoint(cpDir)
	if err != nil {
		t.Fatal(err)
	}
	if links == 0 || info.Copied != info.Tables || info.Linked != 0 || info.Tables == 0 {
		t.Fatalf("links tried %d, info %+v", links, info)
	}
	names, _ := os.ReadDir(cpDir)
	for _, e := range names {
		if strings.HasSuffix(e.Name(), ".sst") {
			a, _ := os.Stat(filepath.Join(cpDir, e.Name()))
			b, err := os.Stat(filepath.Join(dir, "db", e.Name()))
			if err == nil && os.SameFile(a, b) {
				t.Fatalf("%s is a link, not a copy", e.Name())
			}
		}
	}
	checkCheckpointHolds(t, vfs.Default, cpDir, 1000, 0)
}

// On a filesystem without links (the in-memory one) tables are copied; a
// copy that fails leaves nothing behind, so the same directory can be used
// again, and a crash right after the checkpoint keeps it (everything in it
// was synced).
func TestCheckpointCopyThroughVFS(t *testing.T) {
	mem := vfs.NewStrictMem()
	var failCopies atomic.Bool
	fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failCopies.Load() && op.Kind == errorfs.OpWrite && strings.HasPrefix(op.Path, "/cp/") {
			return errorfs.ErrNoSpace
		}
		return nil
	}))
	db, err := Open("/db", checkpointOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fillForCheckpoint(t, db, 1000)

	failCopies.Store(true)
	if _, err := db.Checkpoint("/cp"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("checkpoint with failing writes: %v", err)
	}
	if _, err := mem.Stat("/cp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed checkpoint left its directory behind: %v", err)
	}
	failCopies.Store(false)
	info, err := db.Checkpoint("/cp")
	if err != nil {
		t.Fatal(err)
	}
	if info.Copied != info.Tables || info.Tables == 0 {
		t.Fatalf("info %+v", info)
	}
	crashed := mem.CrashClone()
	checkCheckpointHolds(t, crashed, "/cp", 1000, 0)
}
