package storage

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/storage/vfs/errorfs"
)

// The crash tests run a workload on the strict in-memory filesystem, which
// forgets whatever was not synced, take crash images (CrashClone) at many
// moments while the engine works, and check that the engine recovers every
// image to a state that is a prefix of the history of writes at least as
// long as what was acknowledged when the image was taken. Small memtables
// and tables make flushes and compactions run throughout.

func crashTestOptions(fs vfs.FS) *Options {
	return &Options{
		FS:                  fs,
		Sync:                SyncBatch,
		MemTableSize:        32 << 10,
		TargetFileSize:      8 << 10,
		BlockSize:           1 << 10,
		L0CompactionTrigger: 2,
		LBaseMaxBytes:       48 << 10,
		LevelMultiplier:     4,
	}
}

// crashGenWrites returns n writes over keys prefix+"%04d" (keySpace of
// them): single sets, single deletes and batches of several operations.
// Values are unique, so that a value from the wrong write is noticed.
func crashGenWrites(rng *rand.Rand, prefix string, keySpace, n int) []ftWrite {
	hist := make([]ftWrite, n)
	op := func(i, j int) ftOp {
		k := fmt.Sprintf("%s%04d", prefix, rng.IntN(keySpace))
		if rng.IntN(5) == 0 {
			return ftOp{key: k, del: true}
		}
		size := 10 + rng.IntN(300)
		if rng.IntN(40) == 0 {
			size = 2000 + rng.IntN(3000) // larger than a block
		}
		v := fmt.Appendf(nil, "%s/%d.%d/", prefix, i, j)
		for len(v) < size {
			v = append(v, byte('a'+(len(v)+i)%26))
		}
		return ftOp{key: k, value: string(v)}
	}
	for i := range hist {
		if rng.IntN(3) == 0 {
			w := make(ftWrite, 2+rng.IntN(7))
			for j := range w {
				w[j] = op(i, j)
			}
			hist[i] = w
		} else {
			hist[i] = ftWrite{op(i, 0)}
		}
	}
	return hist
}

func crashKeys(prefix string, keySpace int) []string {
	keys := make([]string, keySpace)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return keys
}

// crashRecoveryOptions are crashTestOptions with background compaction
// turned off, so that the filesystem operations of an Open are exactly
// those of recovery, in a deterministic order.
func crashRecoveryOptions(fs vfs.FS) *Options {
	o := crashTestOptions(fs)
	o.L0CompactionTrigger = 1 << 20
	o.L0CompactionFileTrigger = 1 << 20
	o.L0SlowdownTrigger = 1 << 20
	o.L0StopTrigger = 1 << 20
	o.LBaseMaxBytes = 1 << 50
	return o
}

// recoverCrashImage opens a copy of the crash image img and returns the
// state it recovers. It also checks that recovery is itself crash-safe: a
// crash right after recovery (before any Close) and a crash at a random
// filesystem operation in the middle of recovery must both recover to the
// very same state. img is not modified.
func recoverCrashImage(t *testing.T, rng *rand.Rand, img *vfs.MemFS, getKeys []string) map[string]string {
	t.Helper()
	// First recovery, counting its filesystem operations.
	var counting atomic.Bool
	var count atomic.Int64
	counting.Store(true)
	c1 := img.CrashClone()
	db, err := Open("db", crashRecoveryOptions(errorfs.Wrap(c1, errorfs.InjectorFunc(func(errorfs.Op) error {
		if counting.Load() {
			count.Add(1)
		}
		return nil
	}))))
	counting.Store(false)
	if err != nil {
		t.Fatalf("open crash image: %v\nimage:\n%s", err, img)
	}
	state, err := ftDump(db, getKeys)
	if err != nil {
		t.Fatalf("read recovered state: %v", err)
	}
	post := c1.CrashClone() // crash right after recovery
	if err := db.Close(); err != nil {
		t.Fatalf("close recovered engine: %v", err)
	}

	expectSame := func(what string, fs *vfs.MemFS) {
		t.Helper()
		db, err := Open("db", crashRecoveryOptions(fs))
		if err != nil {
			t.Fatalf("%s: reopen: %v", what, err)
		}
		got, err := ftDump(db, nil)
		if err != nil {
			t.Fatalf("%s: read state: %v", what, err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("%s: close: %v", what, err)
		}
		if !maps.Equal(got, state) {
			t.Fatalf("%s: state differs from the first recovery:\n%s", what, ftDiff(got, state))
		}
	}
	expectSame("crash right after recovery", post)

	// Crash at a random operation of a second recovery of the same image.
	at := rng.Int64N(count.Load())
	var seen atomic.Int64
	var mid *vfs.MemFS
	c3 := img.CrashClone()
	db, err = Open("db", crashRecoveryOptions(errorfs.Wrap(c3, errorfs.InjectorFunc(func(errorfs.Op) error {
		if seen.Add(1)-1 == at {
			mid = c3.CrashClone()
		}
		return nil
	}))))
	if err != nil {
		t.Fatalf("second open of crash image: %v", err)
	}
	if mid == nil {
		// Recovery's operation count varies a little from run to run (the
		// memtable's skiplist is randomized, so recovered writes are cut
		// into tables at different points); crash at its end.
		mid = c3.CrashClone()
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	expectSame(fmt.Sprintf("crash at operation %d of %d of recovery", at, count.Load()), mid)
	return state
}

// TestCrashSingleWriter: one writer, crash images taken between writes (the
// recovered state must be exactly the acknowledged prefix) and concurrently
// with a write (the acknowledged prefix, or that plus the write in flight).
func TestCrashSingleWriter(t *testing.T) {
	nWrites, nCrashes := 3000, 120
	if testing.Short() {
		nWrites, nCrashes = 1000, 40
	}
	const keySpace = 300
	rng := rand.New(rand.NewPCG(11, 12))
	hist := crashGenWrites(rng, "k", keySpace, nWrites)

	// Crash points: half taken by the writer between two writes, half by
	// another goroutine while a write is in flight.
	between := map[int]bool{}
	during := map[int]bool{}
	for len(between)+len(during) < nCrashes {
		i := rng.IntN(nWrites)
		if rng.IntN(2) == 0 {
			between[i] = true
		} else {
			during[i] = true
		}
	}

	type image struct {
		fs     *vfs.MemFS
		lo, hi int // the state must be the model after k writes, lo <= k <= hi
	}
	var (
		mu      sync.Mutex
		images  []image
		started atomic.Int64 // writes begun
		acked   atomic.Int64 // writes acknowledged
	)
	fs := vfs.NewStrictMem()
	db, err := Open("db", crashTestOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	trigger := make(chan int64, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for spin := range trigger {
			// Let the write get some way: into the log write, the sync,
			// a rotation or a flush.
			for range spin {
				runtime.Gosched()
			}
			lo := acked.Load()
			img := fs.CrashClone()
			hi := started.Load()
			mu.Lock()
			images = append(images, image{img, int(lo), int(hi)})
			mu.Unlock()
		}
	}()
	for i, w := range hist {
		if between[i] {
			mu.Lock()
			images = append(images, image{fs.CrashClone(), i, i})
			mu.Unlock()
		}
		started.Store(int64(i + 1))
		if during[i] {
			trigger <- rng.Int64N(100)
		}
		if err := w.apply(db); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		acked.Store(int64(i + 1))
		if rng.IntN(500) == 0 {
			if err := db.Flush(); err != nil {
				t.Fatalf("flush: %v", err)
			}
		}
	}
	close(trigger)
	wg.Wait()
	images = append(images, image{fs.CrashClone(), nWrites, nWrites})
	m := db.Metrics()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes, %d crash images; engine did %d flushes, %d compactions", nWrites, len(images), m.Flushes, m.Compactions)

	keys := crashKeys("k", keySpace)
	exact, inFlight := 0, 0
	for n, img := range images {
		state := recoverCrashImage(t, rng, img.fs, keys)
		k := ftMatchPrefix(hist, img.lo, img.hi, state)
		if k < 0 {
			t.Fatalf("crash image %d: recovered state is not the model after %d..%d writes:\n%s",
				n, img.lo, img.hi, ftDiff(state, ftModelAt(hist, img.lo)))
		}
		if img.lo == img.hi {
			exact++
		} else if k > img.lo {
			inFlight++
		}
	}
	t.Logf("checked %d crash images: %d between writes, %d during one (%d of them kept the write in flight)",
		len(images), exact, len(images)-exact, inFlight)
}

// TestCrashConcurrentWriters: several writers on disjoint keys, each with
// its own acknowledgement record; crash images at random moments. Each
// writer's keys must show a prefix of its history at least as long as what
// it had acknowledged.
func TestCrashConcurrentWriters(t *testing.T) {
	const writers, keySpace = 4, 120
	nWrites, nCrashes := 700, 60
	if testing.Short() {
		nWrites, nCrashes = 250, 20
	}
	rng := rand.New(rand.NewPCG(21, 22))
	hists := make([][]ftWrite, writers)
	var keys []string
	for w := range hists {
		p := fmt.Sprintf("w%d-", w)
		hists[w] = crashGenWrites(rng, p, keySpace, nWrites)
		keys = append(keys, crashKeys(p, keySpace)...)
	}

	type image struct {
		fs     *vfs.MemFS
		lo, hi [writers]int
	}
	var (
		images  []image
		started [writers]atomic.Int64
		acked   [writers]atomic.Int64
	)
	fs := vfs.NewStrictMem()
	db, err := Open("db", crashTestOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	wstart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, wr := range hists[w] {
				started[w].Store(int64(i + 1))
				if err := wr.apply(db); err != nil {
					errs <- fmt.Errorf("writer %d, write %d: %w", w, i, err)
					return
				}
				acked[w].Store(int64(i + 1))
			}
		}()
	}
	crashDone := make(chan struct{})
	go func() {
		defer close(crashDone)
		crng := rand.New(rand.NewPCG(23, 24))
		for len(images) < nCrashes {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(crng.IntN(1200)) * time.Microsecond):
			}
			var img image
			for w := range writers {
				img.lo[w] = int(acked[w].Load())
			}
			img.fs = fs.CrashClone()
			for w := range writers {
				img.hi[w] = int(started[w].Load())
			}
			images = append(images, img)
		}
	}()
	wg.Wait()
	t.Logf("write phase %v", time.Since(wstart))
	close(done)
	<-crashDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var final image
	final.fs = fs.CrashClone()
	for w := range writers {
		final.lo[w], final.hi[w] = nWrites, nWrites
	}
	images = append(images, final)
	m := db.Metrics()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writers x %d writes, %d crash images; engine did %d flushes, %d compactions",
		writers, nWrites, len(images), m.Flushes, m.Compactions)

	for n, img := range images {
		st := time.Now()
		state := recoverCrashImage(t, rng, img.fs, keys)
		if d := time.Since(st); d > time.Second {
			t.Logf("image %d: slow recovery check: %v", n, d)
		}
		parts := make([]map[string]string, writers)
		for w := range parts {
			parts[w] = map[string]string{}
		}
		for k, v := range state {
			var w int
			if _, err := fmt.Sscanf(k, "w%d-", &w); err != nil || w < 0 || w >= writers {
				t.Fatalf("crash image %d: recovered a key no writer wrote: %q", n, k)
			}
			parts[w][k] = v
		}
		for w := range writers {
			if ftMatchPrefix(hists[w], img.lo[w], img.hi[w], parts[w]) < 0 {
				t.Fatalf("crash image %d: writer %d's keys are not its model after %d..%d writes:\n%s",
					n, w, img.lo[w], img.hi[w], ftDiff(parts[w], ftModelAt(hists[w], img.lo[w])))
			}
		}
	}
}
