package storage

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringkv/ringkv/storage/sstable"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/storage/vfs/errorfs"
)

// The quarantine tests damage one table among several — a byte of a data
// block, or its footer — and check what quarantine promises: the read (or
// scan, or compaction) that meets the damage reports ErrCorruption; the
// table leaves the version durably and its file moves to quarantine/, never
// deleted; the owner is told once, with the table's key range; everything
// else stays readable and writable; and a reopen, or a crash at any step of
// the quarantine, leaves the same state.

// qRecorder collects OnQuarantine calls.
type qRecorder struct {
	mu  sync.Mutex
	got []QuarantinedTable
}

func (r *qRecorder) add(q QuarantinedTable) {
	r.mu.Lock()
	r.got = append(r.got, q)
	r.mu.Unlock()
}

func (r *qRecorder) list() []QuarantinedTable {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// qOptions: small blocks so a table has many; no background compaction.
func qOptions(fs vfs.FS, rec *qRecorder) *Options {
	o := &Options{
		FS:                      fs,
		MemTableSize:            1 << 20,
		BlockSize:               256,
		TargetFileSize:          1 << 20,
		L0CompactionTrigger:     1 << 20,
		L0CompactionFileTrigger: 1 << 20,
		L0SlowdownTrigger:       1 << 20,
		L0StopTrigger:           1 << 20,
		LBaseMaxBytes:           1 << 50,
	}
	if rec != nil {
		o.OnQuarantine = rec.add
	}
	return o
}

func qKey(i int) string { return fmt.Sprintf("k%03d", i) }

// qImage is a closed engine on a strict filesystem: an L1 table holding old
// values of the even keys k000..k148, and three L0 tables holding new
// values of k000..k049, k050..k099 (the victim) and k100..k149.
type qImage struct {
	fs     *vfs.MemFS
	victim uint64
	name   string // the victim's path
	// want is the state with every table; without, once the victim is gone
	// (its even keys fall back to their old values, its odd keys vanish).
	want, without map[string]string
	keys          []string
}

func buildQImage(t *testing.T) *qImage {
	t.Helper()
	img := &qImage{fs: vfs.NewStrictMem(), want: map[string]string{}, without: map[string]string{}}
	db, err := Open("db", qOptions(img.fs, nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 150; i += 2 {
		if err := db.Set([]byte(qKey(i)), []byte("old-"+qKey(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	for part := range 3 {
		before, err := ftFiles(img.fs, "db", "table")
		if err != nil {
			t.Fatal(err)
		}
		for i := part * 50; i < part*50+50; i++ {
			k := qKey(i)
			v := "new-" + k + "-" + strings.Repeat("v", 24)
			if err := db.Set([]byte(k), []byte(v)); err != nil {
				t.Fatal(err)
			}
			img.want[k] = v
			switch {
			case part != 1:
				img.without[k] = v
			case i%2 == 0:
				img.without[k] = "old-" + k
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		after, err := ftFiles(img.fs, "db", "table")
		if err != nil {
			t.Fatal(err)
		}
		added := slices.DeleteFunc(after, func(n string) bool { return slices.Contains(before, n) })
		if len(added) != 1 {
			t.Fatalf("flush %d added tables %v, want one", part, added)
		}
		if part == 1 {
			_, img.victim, _ = parseFileName(added[0])
			img.name = "db/" + added[0]
		}
	}
	if m := db.Metrics(); m.Levels[0].Tables != 3 || m.Levels[1].Tables != 1 {
		t.Fatalf("want 3 L0 tables and 1 L1 table:\n%s", m)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		img.keys = append(img.keys, qKey(i))
	}
	return img
}

// damaged returns a copy of the image with the victim's bytes changed by
// damage (given the bytes and the table's index).
func (img *qImage) damaged(t *testing.T, damage func(data []byte, idx *sstable.Index) []byte) *vfs.MemFS {
	t.Helper()
	data, err := ftReadFile(img.fs, img.name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := img.fs.Open(img.name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sstable.Open(f, int64(len(data)), sstable.ReaderOptions{FileNum: img.victim})
	if err != nil {
		t.Fatal(err)
	}
	idx := r.Index()
	if idx.Len() < 3 {
		t.Fatalf("victim has %d data blocks, want at least 3", idx.Len())
	}
	out := damage(data, idx)
	r.Close()
	return withFile(t, img.fs, img.name, out)
}

// blockDamage flips a byte in the middle of data block i.
func blockDamage(i int) func([]byte, *sstable.Index) []byte {
	return func(data []byte, idx *sstable.Index) []byte {
		h := idx.Handle(i)
		return flipBit(data, int(h.Offset+h.Length/2), 3)
	}
}

func footerDamage(data []byte, _ *sstable.Index) []byte { return flipBit(data, len(data)-1, 0) }

func fileExists(t *testing.T, fs vfs.FS, name string) bool {
	t.Helper()
	_, err := fs.Stat(name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func inVersion(db *DB, num uint64) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	f, _ := db.current.find(num)
	return f != nil
}

func (img *qImage) quarantinedName() string {
	return "db/" + quarantineDir + "/" + tableName(img.victim)
}

// checkVictim checks a quarantine record or callback argument.
func (img *qImage) checkVictim(t *testing.T, what string, q QuarantinedTable, reason string) {
	t.Helper()
	if q.FileNum != img.victim || q.Level != 0 || string(q.Smallest) != "k050" || string(q.Largest) != "k099" {
		t.Fatalf("%s: got table %d L%d [%q, %q], want %d L0 [k050, k099]", what, q.FileNum, q.Level, q.Smallest, q.Largest, img.victim)
	}
	if !strings.Contains(q.Reason, reason) {
		t.Fatalf("%s: reason %q does not mention %q", what, q.Reason, reason)
	}
	if q.FileName() != quarantineDir+"/"+tableName(img.victim) {
		t.Fatalf("%s: FileName %q", what, q.FileName())
	}
}

// checkQuarantined checks that the victim is out of db's version, recorded,
// and kept (with the damaged bytes) in quarantine/ only, and that db holds
// exactly the state without it.
func (img *qImage) checkQuarantined(t *testing.T, fs vfs.FS, db *DB, damagedData []byte, reason string) {
	t.Helper()
	if inVersion(db, img.victim) {
		t.Fatalf("table %d is still in the version", img.victim)
	}
	qs := db.Quarantined()
	if len(qs) != 1 {
		t.Fatalf("Quarantined() = %+v, want the victim alone", qs)
	}
	img.checkVictim(t, "Quarantined()", qs[0], reason)
	if fileExists(t, fs, img.name) {
		t.Fatalf("%s is still in the engine directory", img.name)
	}
	got, err := ftReadFile(fs, img.quarantinedName())
	if err != nil {
		t.Fatalf("quarantined file: %v", err)
	}
	if damagedData != nil && string(got) != string(damagedData) {
		t.Fatalf("%s does not hold the table's bytes", img.quarantinedName())
	}
	state, err := ftDump(db, img.keys)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(state, img.without) {
		t.Fatalf("state after the quarantine differs:\n%s", ftDiff(state, img.without))
	}
}

func mustOpen(t *testing.T, fs vfs.FS, rec *qRecorder) *DB {
	t.Helper()
	db, err := Open("db", qOptions(fs, rec))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// reopenChecked reopens fs (after a crash: a crash clone) and checks that
// the quarantine holds, with no new callback.
func (img *qImage) reopenChecked(t *testing.T, fs *vfs.MemFS, damagedData []byte, reason string) {
	t.Helper()
	rec := &qRecorder{}
	db := mustOpen(t, fs, rec)
	img.checkQuarantined(t, fs, db, damagedData, reason)
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("reopen called OnQuarantine again: %+v", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestQuarantineDamagedBlockOnGet(t *testing.T) {
	img := buildQImage(t)
	fs := img.damaged(t, blockDamage(0))
	damagedData, err := ftReadFile(fs, img.name)
	if err != nil {
		t.Fatal(err)
	}
	rec := &qRecorder{}
	db := mustOpen(t, fs, rec)
	if !inVersion(db, img.victim) || len(rec.list()) != 0 {
		t.Fatal("a damaged data block was noticed at open")
	}
	// Keys of the other tables are untouched.
	for _, k := range []string{"k000", "k049", "k100", "k149"} {
		if v, err := db.Get([]byte(k)); err != nil || string(v) != img.want[k] {
			t.Fatalf("get %s = %q, %v", k, v, err)
		}
	}
	// The first read of a key in the damaged block fails, naming the table.
	_, err = db.Get([]byte("k050"))
	if num := fmt.Sprintf("%06d", img.victim); !errors.Is(err, ErrCorruption) || !strings.Contains(err.Error(), num) {
		t.Fatalf("first get of k050: want ErrCorruption naming table %s, got %v", num, err)
	}
	got := rec.list()
	if len(got) != 1 {
		t.Fatalf("OnQuarantine called %d times, want once", len(got))
	}
	img.checkVictim(t, "OnQuarantine", got[0], "checksum")
	if m := db.Metrics(); m.TablesQuarantined != 1 || m.Levels[0].Tables != 2 {
		t.Fatalf("metrics after the quarantine:\n%s", m)
	}
	// Later reads go on without it: the old value, or nothing.
	if v, err := db.Get([]byte("k050")); err != nil || string(v) != "old-k050" {
		t.Fatalf("second get of k050 = %q, %v; want the older value", v, err)
	}
	if _, err := db.Get([]byte("k051")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get k051 = %v; want not found", err)
	}
	img.checkQuarantined(t, fs, db, damagedData, "checksum")
	if len(rec.list()) != 1 {
		t.Fatal("OnQuarantine called again by later reads")
	}
	// The engine still writes, flushes and compacts.
	if err := db.Set([]byte("k051"), []byte("repaired")); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	if v, err := db.Get([]byte("k051")); err != nil || string(v) != "repaired" {
		t.Fatalf("get k051 after the repair = %q, %v", v, err)
	}
	if err := db.Delete([]byte("k051")); err != nil {
		t.Fatal(err)
	}
	img.checkQuarantined(t, fs, db, damagedData, "checksum")
	crashed := fs.CrashClone()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The quarantine survives a crash and a clean reopen, twice (every Open
	// writes a fresh manifest that must carry the record on).
	img.reopenChecked(t, crashed, damagedData, "checksum")
	img.reopenChecked(t, fs, damagedData, "checksum")
	img.reopenChecked(t, fs, damagedData, "checksum")

	// A record whose file someone removed is forgotten.
	if err := ftRemoveFile(fs, img.quarantinedName()); err != nil {
		t.Fatal(err)
	}
	db = mustOpen(t, fs, nil)
	if qs := db.Quarantined(); len(qs) != 0 {
		t.Fatalf("Quarantined() after the file was removed = %+v", qs)
	}
	db.Close()
}

func TestQuarantineDamagedBlockOnScan(t *testing.T) {
	img := buildQImage(t)
	fs := img.damaged(t, blockDamage(1))
	rec := &qRecorder{}
	db := mustOpen(t, fs, rec)
	defer db.Close()
	it := db.NewIter(nil)
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if string(it.Value()) != img.want[string(it.Key())] {
			t.Fatalf("scan gave %s = %q", it.Key(), it.Value())
		}
		n++
	}
	err := it.Close()
	if !errors.Is(err, ErrCorruption) {
		t.Fatalf("scan over the damaged block ended with %v after %d keys, want ErrCorruption", err, n)
	}
	if n < 50 || n >= 100 {
		t.Fatalf("scan stopped after %d keys, want it to stop inside the victim's range", n)
	}
	if got := rec.list(); len(got) != 1 {
		t.Fatalf("OnQuarantine called %d times, want once", len(got))
	} else {
		img.checkVictim(t, "OnQuarantine", got[0], "checksum")
	}
	img.checkQuarantined(t, fs, db, nil, "checksum")
}

func TestQuarantineDamagedBlockInCompaction(t *testing.T) {
	img := buildQImage(t)
	fs := img.damaged(t, blockDamage(2))
	rec := &qRecorder{}
	db := mustOpen(t, fs, rec)
	tablesBefore, err := ftFiles(fs, "db", "table")
	if err != nil {
		t.Fatal(err)
	}
	// The first L0 compaction meets the damage and aborts; the victim is
	// quarantined and the next compaction merges the rest.
	if err := db.Compact(); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if got := rec.list(); len(got) != 1 {
		t.Fatalf("OnQuarantine called %d times, want once", len(got))
	} else {
		img.checkVictim(t, "OnQuarantine", got[0], "checksum")
	}
	m := db.Metrics()
	if m.Levels[0].Tables != 0 || m.Compactions != 1 || m.TablesQuarantined != 1 {
		t.Fatalf("want L0 empty after one finished compaction:\n%s", m)
	}
	img.checkQuarantined(t, fs, db, nil, "checksum")
	// Only the version's tables are left: the aborted compaction left no
	// output behind.
	tables, err := ftFiles(fs, "db", "table")
	if err != nil {
		t.Fatal(err)
	}
	db.mu.Lock()
	live := 0
	for level := range db.current.levels {
		live += len(db.current.levels[level])
	}
	db.mu.Unlock()
	if len(tables) != live {
		t.Fatalf("directory holds tables %v (before: %v), the version %d", tables, tablesBefore, live)
	}
	if err := db.Set([]byte("after"), []byte("x")); err != nil {
		t.Fatalf("write after the aborted compaction: %v", err)
	}
	img.without["after"] = "x"
	crashed := fs.CrashClone()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	img.keys = append(img.keys, "after")
	img.reopenChecked(t, crashed, nil, "checksum")
}

func TestQuarantineAtOpen(t *testing.T) {
	img := buildQImage(t)
	truncate := func(data []byte, _ *sstable.Index) []byte { return data[:len(data)-10] }
	for _, c := range []struct {
		name   string
		damage func([]byte, *sstable.Index) []byte
		reason string
	}{
		{"footer", footerDamage, "magic"},
		{"truncated", truncate, "bytes, the manifest says"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := img.damaged(t, c.damage)
			data, err := ftReadFile(fs, img.name)
			if err != nil {
				t.Fatal(err)
			}
			// Refused when the options say so, and the directory is left
			// as it was.
			for _, o := range []func(*Options){
				func(o *Options) { o.RefuseCorruptTablesAtOpen = true },
				func(o *Options) { o.DisableQuarantine = true },
			} {
				before := fs.String()
				opts := qOptions(fs, nil)
				o(opts)
				_, err := Open("db", opts)
				if !errors.Is(err, ErrCorruption) || !strings.Contains(err.Error(), tableName(img.victim)) {
					t.Fatalf("open refusing damaged tables: want ErrCorruption naming the table, got %v", err)
				}
				if fs.String() != before {
					t.Fatal("a refused Open changed the directory")
				}
			}
			// By default Open quarantines it, tells the owner before it
			// returns, and opens.
			rec := &qRecorder{}
			db := mustOpen(t, fs, rec)
			got := rec.list()
			if len(got) != 1 {
				t.Fatalf("OnQuarantine called %d times during Open, want once", len(got))
			}
			img.checkVictim(t, "OnQuarantine", got[0], c.reason)
			if m := db.Metrics(); m.TablesQuarantined != 1 {
				t.Fatalf("metrics:\n%s", m)
			}
			img.checkQuarantined(t, fs, db, data, c.reason)
			crashed := fs.CrashClone()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			img.reopenChecked(t, crashed, data, c.reason)
		})
	}
}

// TestQuarantineKeepsHoldersReading: an iterator opened before the
// quarantine keeps reading the table through the handle it has, after the
// file has moved; the file is kept when it lets go. A snapshot holds no
// tables: its reads after the quarantine go without the table.
func TestQuarantineKeepsHoldersReading(t *testing.T) {
	img := buildQImage(t)
	fs := img.damaged(t, blockDamage(0))
	rec := &qRecorder{}
	db := mustOpen(t, fs, rec)
	defer db.Close()
	snap := db.NewSnapshot()
	defer snap.Close()
	it := db.NewIter(&IterOptions{LowerBound: []byte("k090")})
	if !it.First() || string(it.Key()) != "k090" {
		t.Fatalf("iterator at %q, %v", it.Key(), it.Error())
	}
	if _, err := db.Get([]byte("k050")); !errors.Is(err, ErrCorruption) {
		t.Fatalf("get k050: %v", err)
	}
	if len(rec.list()) != 1 || fileExists(t, fs, img.name) {
		t.Fatal("the victim was not quarantined")
	}
	// The iterator reads the rest of the victim (undamaged blocks) from
	// its handle.
	n := 0
	for ok := it.SeekGE([]byte("k091")); ok && string(it.Key()) < "k100"; ok = it.Next() {
		if string(it.Value()) != img.want[string(it.Key())] {
			t.Fatalf("held iterator: %s = %q, want %q", it.Key(), it.Value(), img.want[string(it.Key())])
		}
		n++
	}
	if n != 9 || it.Error() != nil {
		t.Fatalf("held iterator read %d keys of k091..k099, error %v", n, it.Error())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if !fileExists(t, fs, img.quarantinedName()) {
		t.Fatal("the quarantined file was removed when its last reader let go")
	}
	if v, err := snap.Get([]byte("k052")); err != nil || string(v) != "old-k052" {
		t.Fatalf("snapshot get k052 = %q, %v; want the older value", v, err)
	}
	img.checkQuarantined(t, fs, db, nil, "checksum")
}

func TestQuarantineConcurrentReaders(t *testing.T) {
	img := buildQImage(t)
	fs := img.damaged(t, blockDamage(0))
	rec := &qRecorder{}
	db := mustOpen(t, fs, rec)
	defer db.Close()
	var wg sync.WaitGroup
	var corrupt atomic.Int64
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 20 {
				k := qKey(50 + (g+round)%10)
				v, err := db.Get([]byte(k))
				// Before the quarantine, keys in undamaged blocks give the
				// victim's value; after it, the state without the victim.
				want, ok := img.without[k]
				switch {
				case errors.Is(err, ErrCorruption):
					corrupt.Add(1)
				case errors.Is(err, ErrNotFound) && !ok:
				case err == nil && (string(v) == want || string(v) == img.want[k]):
				default:
					errs <- fmt.Errorf("get %s = %q, %v; want %q or %q (present %v) or ErrCorruption", k, v, err, img.want[k], want, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if corrupt.Load() == 0 || len(rec.list()) != 1 || db.Metrics().TablesQuarantined != 1 {
		t.Fatalf("%d reads failed, OnQuarantine called %d times; want some failures and one call", corrupt.Load(), len(rec.list()))
	}
	img.checkQuarantined(t, fs, db, nil, "checksum")
}

// snapInjector takes a crash image of a strict filesystem before every
// operation while armed.
type snapInjector struct {
	fs     *vfs.MemFS
	armed  atomic.Bool
	mu     sync.Mutex
	images []*vfs.MemFS
	ops    []errorfs.Op
}

func (s *snapInjector) MaybeError(op errorfs.Op) error {
	if s.armed.Load() {
		img := s.fs.CrashClone()
		s.mu.Lock()
		s.images = append(s.images, img)
		s.ops = append(s.ops, op)
		s.mu.Unlock()
	}
	return nil
}

// TestQuarantineCrashAtEachStep crashes before every filesystem operation
// of a quarantine (the manifest write and sync, creating quarantine/, the
// rename, each directory sync) and after the last. Every crash image must
// open to a consistent state: either the table is still in the version and
// the next read quarantines it, or it is out, recorded, and its file is in
// quarantine/ (moved there by Open if the crash came before the move); in
// no image is the file lost or any other key wrong.
func TestQuarantineCrashAtEachStep(t *testing.T) {
	img := buildQImage(t)
	damagedFS := img.damaged(t, blockDamage(0))
	damagedData, err := ftReadFile(damagedFS, img.name)
	if err != nil {
		t.Fatal(err)
	}
	snap := &snapInjector{fs: damagedFS}
	db, err := Open("db", qOptions(errorfs.Wrap(damagedFS, snap), nil))
	if err != nil {
		t.Fatal(err)
	}
	snap.armed.Store(true)
	_, err = db.Get([]byte("k050"))
	snap.armed.Store(false)
	if !errors.Is(err, ErrCorruption) {
		t.Fatalf("get k050: %v", err)
	}
	snap.images = append(snap.images, damagedFS.CrashClone())
	snap.ops = append(snap.ops, errorfs.Op{Path: "(after the quarantine)"})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if len(snap.images) < 6 {
		t.Fatalf("only %d operations during the quarantine", len(snap.images))
	}
	var notYet, movedByOpen, bothNames, done int
	for i, fs := range snap.images {
		what := fmt.Sprintf("crash before %s %s (step %d of %d)", snap.ops[i].Kind, snap.ops[i].Path, i, len(snap.images))
		inDir, inQ := fileExists(t, fs, img.name), fileExists(t, fs, img.quarantinedName())
		if !inDir && !inQ {
			t.Fatalf("%s: the table's file is in neither place", what)
		}
		rec := &qRecorder{}
		db, err := Open("db", qOptions(fs, rec))
		if err != nil {
			t.Fatalf("%s: open: %v", what, err)
		}
		if inVersion(db, img.victim) {
			// The edit was not durable: as before the quarantine.
			notYet++
			if inQ || len(db.Quarantined()) != 0 || len(rec.list()) != 0 {
				t.Fatalf("%s: table in the version, yet in quarantine/ (%v) or recorded", what, inQ)
			}
			if _, err := db.Get([]byte("k050")); !errors.Is(err, ErrCorruption) {
				t.Fatalf("%s: get k050: %v", what, err)
			}
		} else {
			switch {
			case inDir && inQ:
				bothNames++
			case inDir:
				movedByOpen++
			default:
				done++
			}
			// Open finished the move; the owner is told again when the
			// crash may have come before it was.
			if n := len(rec.list()); (inDir && n != 1) || (!inDir && n != 0) {
				t.Fatalf("%s: OnQuarantine called %d times by Open (file was in the engine directory: %v)", what, n, inDir)
			}
		}
		img.checkQuarantined(t, fs, db, damagedData, "checksum")
		crashed := fs.CrashClone()
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		img.reopenChecked(t, crashed, damagedData, "checksum")
	}
	t.Logf("%d crash points: %d before the edit was durable, %d with the move left to Open, %d with both names, %d after the move",
		len(snap.images), notYet, movedByOpen, bothNames, done)
	if notYet == 0 || movedByOpen == 0 || done == 0 {
		t.Fatal("the crash points do not cover every phase of the quarantine")
	}
}

// TestQuarantineInjectedErrors fails each filesystem operation of a
// quarantine in turn, once (a transient error) and from then on (the disk
// dies). The read still reports ErrCorruption; a failed manifest write fails
// the engine and leaves the table in the version; a failed move leaves the
// engine serving without the table and the move to the next Open. After a
// crash every case reopens consistent and the file is never lost.
func TestQuarantineInjectedErrors(t *testing.T) {
	img := buildQImage(t)
	damagedFS := img.damaged(t, blockDamage(0))
	damagedData, err := ftReadFile(damagedFS, img.name)
	if err != nil {
		t.Fatal(err)
	}
	// Count the operations of a quarantine; reads are left alone, since the
	// read of the damaged block must happen.
	kinds := []errorfs.OpKind{errorfs.OpCreate, errorfs.OpOpen, errorfs.OpWrite, errorfs.OpSync,
		errorfs.OpRename, errorfs.OpRemove, errorfs.OpMkdir, errorfs.OpList, errorfs.OpStat}
	counter := errorfs.Counter(kinds...)
	var armed atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !armed.Load() {
			return nil
		}
		return counter.MaybeError(op)
	})
	{
		fs := damagedFS.CrashClone()
		db := mustOpen(t, errorfs.Wrap(fs, inj), nil)
		openVictim(t, db)
		armed.Store(true)
		db.Get([]byte("k050"))
		armed.Store(false)
		db.Close()
	}
	ops := counter.Count()
	if ops < 5 {
		t.Fatalf("only %d operations during a quarantine", ops)
	}
	var failedEngine, failedMove, failedSyncs int
	for _, sticky := range []bool{false, true} {
		for n := range ops {
			what := fmt.Sprintf("operation %d of %d fails (sticky %v)", n, ops, sticky)
			var idx *errorfs.IndexInjector
			if sticky {
				idx = errorfs.OnIndex(n, kinds...)
			} else {
				idx = errorfs.OnIndexOnce(n, kinds...)
			}
			var armed atomic.Bool
			rec := &recordingInjector{inner: errorfs.InjectorFunc(func(op errorfs.Op) error {
				if !armed.Load() {
					return nil
				}
				return idx.MaybeError(op)
			})}
			fs := damagedFS.CrashClone()
			qrec := &qRecorder{}
			db := mustOpen(t, errorfs.Wrap(fs, rec), qrec)
			openVictim(t, db)
			armed.Store(true)
			_, err := db.Get([]byte("k050"))
			if !errors.Is(err, ErrCorruption) {
				t.Fatalf("%s: get k050: %v", what, err)
			}
			// The reader let go of the table: whatever failed, its file is
			// kept somewhere.
			if !fileExists(t, fs, img.name) && !fileExists(t, fs, img.quarantinedName()) {
				t.Fatalf("%s: the table's file was removed", what)
			}
			if inVersion(db, img.victim) {
				// The edit failed: the engine is failed, as after any
				// manifest error, and the owner was not told.
				failedEngine++
				if err := db.Set([]byte("x"), []byte("y")); !errors.Is(err, ErrFailed) {
					t.Fatalf("%s: write after a failed quarantine edit: %v", what, err)
				}
				if len(qrec.list()) != 0 {
					t.Fatalf("%s: OnQuarantine called though the table is in the version", what)
				}
			} else {
				if len(qrec.list()) != 1 {
					t.Fatalf("%s: OnQuarantine called %d times", what, len(qrec.list()))
				}
				if fileExists(t, fs, img.name) {
					failedMove++
				}
				if db.bgError() != nil {
					// Only when the move's new name may not be durable.
					failedSyncs++
					rec.mu.Lock()
					last := rec.failed[0]
					rec.mu.Unlock()
					if last.Kind != errorfs.OpSync && last.Kind != errorfs.OpOpen || !strings.Contains(last.Path, quarantineDir) {
						t.Fatalf("%s: the engine failed after %s %s", what, last.Kind, last.Path)
					}
				} else if !sticky {
					// Transient: the engine serves on without the table.
					armed.Store(false)
					if err := db.Set([]byte("x"), []byte("y")); err != nil {
						t.Fatalf("%s: write after the quarantine: %v", what, err)
					}
					if err := db.Delete([]byte("x")); err != nil {
						t.Fatal(err)
					}
					state, err := ftDump(db, img.keys)
					if err != nil || !maps.Equal(state, img.without) {
						t.Fatalf("%s: state after the quarantine: %v\n%s", what, err, ftDiff(state, img.without))
					}
				}
			}
			armed.Store(false)
			crashed := fs.CrashClone()
			db.Close()
			// After a crash: consistent, and the next read (if the table
			// came back) quarantines it for good.
			db = mustOpen(t, crashed, nil)
			db.Get([]byte("k050"))
			img.checkQuarantined(t, crashed, db, damagedData, "checksum")
			db.Close()
		}
	}
	t.Logf("%d operations per quarantine: %d runs failed the edit, %d left the move to the next Open, %d failed syncing quarantine/",
		ops, failedEngine, failedMove, failedSyncs)
	if failedEngine == 0 || failedMove == 0 || failedSyncs == 0 {
		t.Fatal("the sweep did not fail both the edit and the move")
	}
}

// openVictim reads a key of the victim's last block, so that its reader is
// open before the faults start: a failure to open a file is an I/O error, not
// damage, and quarantines nothing.
func openVictim(t *testing.T, db *DB) {
	t.Helper()
	if _, err := db.Get([]byte("k099")); err != nil {
		t.Fatal(err)
	}
}

// TestQuarantineDisabled: with DisableQuarantine the damaged table stays in
// service, every read of it fails, and a compaction that meets it fails the
// engine rather than drop its keys.
func TestQuarantineDisabled(t *testing.T) {
	img := buildQImage(t)
	fs := img.damaged(t, blockDamage(0))
	rec := &qRecorder{}
	opts := qOptions(fs, rec)
	opts.DisableQuarantine = true
	db, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 3 {
		if _, err := db.Get([]byte("k050")); !errors.Is(err, ErrCorruption) {
			t.Fatalf("get k050: %v", err)
		}
	}
	if err := db.Compact(); !errors.Is(err, ErrFailed) || !errors.Is(err, ErrCorruption) {
		t.Fatalf("compact over the damaged table: %v; want the engine failed by corruption", err)
	}
	if !inVersion(db, img.victim) || len(rec.list()) != 0 || len(db.Quarantined()) != 0 || !fileExists(t, fs, img.name) {
		t.Fatal("the table was quarantined with quarantine disabled")
	}
}
