package storage

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/storage/wal"
)

// The corruption tests damage the engine's files — truncated and bit-flipped
// commit logs, tables and manifests, a CURRENT naming nothing, a missing
// table — and check that the engine either reports ErrCorruption naming the
// file or (where the damage is indistinguishable from a torn write) opens
// with a clean prefix. It must never return a wrong value or panic.
//
// They run with quarantine off: a damaged table stays in service, so every
// read that meets it must report it. quarantine_test.go covers quarantine.

func corruptionOptions(fs vfs.FS) *Options {
	return &Options{
		FS:                      fs,
		DisableQuarantine:       true,
		MemTableSize:            1 << 20,
		BlockSize:               512,
		TargetFileSize:          8 << 10,
		L0CompactionTrigger:     1 << 20,
		L0CompactionFileTrigger: 1 << 20,
		L0SlowdownTrigger:       1 << 20,
		L0StopTrigger:           1 << 20,
		LBaseMaxBytes:           1 << 50,
	}
}

// recordEnds parses a wal-format file and returns the end offset of each
// record.
func recordEnds(t *testing.T, data []byte) []int64 {
	t.Helper()
	r := wal.NewReader(strings.NewReader(string(data)))
	var ends []int64
	for {
		_, err := r.Next()
		if err == io.EOF {
			return ends
		}
		if err != nil {
			t.Fatalf("parse log: %v", err)
		}
		ends = append(ends, r.Offset())
	}
}

// withFile returns a copy of img whose file name holds data.
func withFile(t *testing.T, img *vfs.MemFS, name string, data []byte) *vfs.MemFS {
	t.Helper()
	c := img.CrashClone()
	if err := ftWriteFile(c, name, data); err != nil {
		t.Fatal(err)
	}
	return c
}

func flipBit(data []byte, off int, bit uint) []byte {
	d := slices.Clone(data)
	d[off] ^= 1 << (bit % 8)
	return d
}

// openState opens fs and returns its whole state.
func openState(fs vfs.FS, getKeys []string) (map[string]string, error) {
	db, err := Open("db", corruptionOptions(fs))
	if err != nil {
		return nil, err
	}
	state, err := ftDump(db, getKeys)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return state, err
}

// logImage writes n single-record writes with SyncBatch and returns the
// crash image (taken without Close, so the writes are only in the log), the
// log's name and contents, the end of each record, and the writes.
func logImage(t *testing.T, n int) (*vfs.MemFS, string, []byte, []int64, []ftWrite) {
	t.Helper()
	rng := rand.New(rand.NewPCG(41, 42))
	hist := make([]ftWrite, n)
	for i := range hist {
		k := fmt.Sprintf("k%03d", rng.IntN(40))
		switch {
		case i == n-1:
			// The last record: a small batch, each of whose bytes is damaged
			// in turn.
			hist[i] = ftWrite{{key: k, value: "last-" + k}, {key: "k000", del: true}, {key: "zz", value: "tail"}}
		case rng.IntN(6) == 0:
			hist[i] = ftWrite{{key: k, del: true}}
		default:
			hist[i] = ftWrite{{key: k, value: fmt.Sprintf("v%d-%s", i, strings.Repeat("x", rng.IntN(80)))}}
		}
	}
	strict := vfs.NewStrictMem()
	db, err := Open("db", corruptionOptions(strict))
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range hist {
		if err := w.apply(db); err != nil {
			t.Fatal(i, err)
		}
	}
	img := strict.CrashClone()
	db.Close()
	logs, err := ftFiles(img, "db", "log")
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		t.Fatal("no commit log")
	}
	name := "db/" + logs[len(logs)-1]
	data, err := ftReadFile(img, name)
	if err != nil {
		t.Fatal(err)
	}
	ends := recordEnds(t, data)
	if len(ends) != n {
		t.Fatalf("log %s has %d records, want %d", name, len(ends), n)
	}
	return img, name, data, ends, hist
}

func logKeys() []string {
	keys := []string{"zz"}
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("k%03d", i))
	}
	return keys
}

// TestCorruptLogTruncated cuts the newest log at every offset inside its
// last record and at a sample of earlier offsets: recovery must keep exactly
// the records that are whole.
func TestCorruptLogTruncated(t *testing.T) {
	const n = 60
	img, name, data, ends, hist := logImage(t, n)
	keys := logKeys()
	offsets := []int{0, 1, wal.HeaderSize - 1, wal.HeaderSize, int(ends[0]) - 1, int(ends[0]), int(ends[0]) + 1}
	for off := int(ends[n-2]); off <= len(data); off++ {
		offsets = append(offsets, off)
	}
	rng := rand.New(rand.NewPCG(43, 44))
	for range 25 {
		offsets = append(offsets, rng.IntN(len(data)))
	}
	for i, off := range offsets {
		whole := 0
		for whole < n && ends[whole] <= int64(off) {
			whole++
		}
		fs := withFile(t, img, name, data[:off])
		state, err := openState(fs, keys)
		if err != nil {
			t.Fatalf("log cut at %d of %d bytes: open: %v", off, len(data), err)
		}
		if want := ftModelAt(hist, whole); !maps.Equal(state, want) {
			t.Fatalf("log cut at %d of %d bytes (%d whole records): state differs:\n%s", off, len(data), whole, ftDiff(state, want))
		}
		if i%10 == 0 {
			// The engine goes on from the clean prefix: a new write
			// survives another reopen, and the torn tail stays dropped.
			db, err := Open("db", corruptionOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Set([]byte("after"), []byte("x")); err != nil {
				t.Fatal(err)
			}
			crashed := fs.CrashClone()
			db.Close()
			want := ftModelAt(hist, whole)
			want["after"] = "x"
			for _, f := range []*vfs.MemFS{fs, crashed} {
				state, err := openState(f, keys)
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(state, want) {
					t.Fatalf("log cut at %d, then a write and a reopen: state differs:\n%s", off, ftDiff(state, want))
				}
			}
		}
	}
	t.Logf("%d truncation offsets of a %d-byte log", len(offsets), len(data))
}

// TestCorruptLogBitFlip flips each bit position of a middle record (valid
// records follow it: Open must fail with ErrCorruption naming the log) and
// of the last record (indistinguishable from a torn write: Open keeps the
// records before it).
func TestCorruptLogBitFlip(t *testing.T) {
	const n = 60
	img, name, data, ends, hist := logImage(t, n)
	keys := logKeys()
	logBase := name[strings.LastIndexByte(name, '/')+1:]
	mid := n / 2
	for off := int(ends[mid-1]); off < int(ends[mid]); off++ {
		fs := withFile(t, img, name, flipBit(data, off, uint(off)))
		_, err := openState(fs, keys)
		if !errors.Is(err, ErrCorruption) || !strings.Contains(err.Error(), logBase) {
			t.Fatalf("bit flipped at offset %d in record %d of %d: want an ErrCorruption naming %s, got %v",
				off, mid, n, logBase, err)
		}
		if off == int(ends[mid-1]) {
			t.Logf("a damaged middle record: %v", err)
		}
	}
	want := ftModelAt(hist, n-1)
	for off := int(ends[n-2]); off < len(data); off++ {
		for _, bit := range []uint{0, 7} {
			fs := withFile(t, img, name, flipBit(data, off, bit))
			state, err := openState(fs, keys)
			if err != nil {
				t.Fatalf("bit %d flipped at offset %d in the last record: open: %v", bit, off, err)
			}
			if !maps.Equal(state, want) {
				t.Fatalf("bit %d flipped at offset %d in the last record: state differs:\n%s", bit, off, ftDiff(state, want))
			}
		}
	}
}

// tableImage builds an engine whose tables sit in L0 and L1 with
// overlapping keys (newer values and tombstones in L0 hide older values in
// L1), closes it, and returns it with the expected state.
func tableImage(t *testing.T) (*vfs.MemFS, map[string]string, []string) {
	t.Helper()
	fs := vfs.NewMem()
	db, err := Open("db", corruptionOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(51, 52))
	const keySpace = 300
	m := map[string]string{}
	for round := range 5 {
		for i := range 250 {
			k := fmt.Sprintf("key%04d", rng.IntN(keySpace))
			if rng.IntN(5) == 0 {
				if err := db.Delete([]byte(k)); err != nil {
					t.Fatal(err)
				}
				delete(m, k)
				continue
			}
			v := fmt.Sprintf("r%d.%d-%s", round, i, strings.Repeat("abcdefgh", rng.IntN(30)))
			if err := db.Set([]byte(k), []byte(v)); err != nil {
				t.Fatal(err)
			}
			m[k] = v
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		if round == 2 {
			if err := db.Compact(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, keySpace)
	for i := range keys {
		keys[i] = fmt.Sprintf("key%04d", i)
	}
	return fs, m, keys
}

// checkNoWrongValue opens fs and reads every key and a full scan: each read
// must give the right answer or an error wrapping ErrCorruption.
func checkNoWrongValue(t *testing.T, fs vfs.FS, want map[string]string, keys []string, what string) (corrupt int) {
	t.Helper()
	db, err := Open("db", corruptionOptions(fs))
	if err != nil {
		if !errors.Is(err, ErrCorruption) {
			t.Fatalf("%s: open failed without ErrCorruption: %v", what, err)
		}
		return 1
	}
	defer db.Close()
	for _, k := range keys {
		v, err := db.Get([]byte(k))
		w, ok := want[k]
		switch {
		case err == nil:
			if !ok || string(v) != w {
				t.Fatalf("%s: get %q gave %s, want %s", what, k, ftShow(string(v), true), ftShow(w, ok))
			}
		case errors.Is(err, ErrNotFound):
			if ok {
				t.Fatalf("%s: get %q gave not found, want %s", what, k, ftShow(w, ok))
			}
		case errors.Is(err, ErrCorruption):
			corrupt++
		default:
			t.Fatalf("%s: get %q: error without ErrCorruption: %v", what, k, err)
		}
	}
	sorted := slices.Sorted(maps.Keys(want))
	it := db.NewIter(nil)
	i := 0
	for ok := it.First(); ok; ok = it.Next() {
		if i >= len(sorted) || string(it.Key()) != sorted[i] || string(it.Value()) != want[sorted[i]] {
			exp := "<end>"
			if i < len(sorted) {
				exp = sorted[i]
			}
			t.Fatalf("%s: scan entry %d is %q = %.24q, want key %q", what, i, it.Key(), it.Value(), exp)
		}
		i++
	}
	err = it.Close()
	switch {
	case err == nil && i != len(sorted):
		t.Fatalf("%s: scan ended after %d of %d keys without an error", what, i, len(sorted))
	case err != nil && !errors.Is(err, ErrCorruption):
		t.Fatalf("%s: scan: error without ErrCorruption: %v", what, err)
	case err != nil:
		corrupt++
	}
	return corrupt
}

// TestCorruptTableBitFlip flips a bit at many offsets of every table, one at
// a time on a fresh copy: every read must be right or fail with
// ErrCorruption.
func TestCorruptTableBitFlip(t *testing.T) {
	img, want, keys := tableImage(t)
	tables, err := ftFiles(img, "db", "table")
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 3 {
		t.Fatalf("only %d tables", len(tables))
	}
	if c := checkNoWrongValue(t, img.CrashClone(), want, keys, "undamaged"); c != 0 {
		t.Fatalf("undamaged engine reports corruption")
	}
	perTable := 40
	if testing.Short() {
		perTable = 15
	}
	rng := rand.New(rand.NewPCG(53, 54))
	trials, detected := 0, 0
	for _, tbl := range tables {
		name := "db/" + tbl
		data, err := ftReadFile(img, name)
		if err != nil {
			t.Fatal(err)
		}
		offsets := []int{0, len(data) - 1}
		for off := len(data) - 64; off < len(data); off += 5 { // the footer
			offsets = append(offsets, max(off, 0))
		}
		for range perTable {
			offsets = append(offsets, rng.IntN(len(data)))
		}
		for _, off := range offsets {
			bit := uint(rng.IntN(8))
			fs := withFile(t, img, name, flipBit(data, off, bit))
			c := checkNoWrongValue(t, fs, want, keys, fmt.Sprintf("%s (%d bytes) bit %d flipped at offset %d", tbl, len(data), bit, off))
			trials++
			if c > 0 {
				detected++
			}
		}
	}
	t.Logf("%d tables, %d damaged copies, %d of them reported as corrupt by some read", len(tables), trials, detected)
}

// manifestImage builds an engine with a manifest of several edits, the last
// of which is a flush whose commit log was then deleted, and returns it
// closed with its expected state.
func manifestImage(t *testing.T) (*vfs.MemFS, map[string]string, []string) {
	t.Helper()
	fs := vfs.NewMem()
	db, err := Open("db", corruptionOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	var keys []string
	for i := range 120 {
		k := fmt.Sprintf("m%03d", i%70)
		v := fmt.Sprintf("v%d", i)
		if err := db.Set([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
		m[k] = v
		if i < 70 {
			keys = append(keys, k)
		}
		switch i {
		case 30, 60, 110:
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
		case 90:
			if err := db.Compact(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return fs, m, keys
}

func currentManifest(t *testing.T, fs vfs.FS) string {
	t.Helper()
	cur, err := ftReadFile(fs, "db/CURRENT")
	if err != nil {
		t.Fatal(err)
	}
	return "db/" + strings.TrimSuffix(string(cur), "\n")
}

// TestCorruptManifestBitFlip flips bits of the manifest. Damage in any
// record but the last must fail Open with ErrCorruption. Damage in the last
// record looks like a torn write: Open may then roll back to the earlier
// edits only if no acknowledged write is lost; otherwise it must fail with
// ErrCorruption. In no case may a read give a wrong value. Two manifests:
// one of several edits ending in a flush whose log was then deleted, and a
// fresh one (as every Open writes) holding only the header and the snapshot
// of the whole version.
func TestCorruptManifestBitFlip(t *testing.T) {
	img, want, keys := manifestImage(t)
	t.Run("edits", func(t *testing.T) { checkManifestFlips(t, img, want, keys, 3) })

	fresh := img.CrashClone()
	db, err := Open("db", corruptionOptions(fresh))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	t.Run("snapshot-only", func(t *testing.T) { checkManifestFlips(t, fresh, want, keys, 1) })
}

func checkManifestFlips(t *testing.T, img *vfs.MemFS, want map[string]string, keys []string, stride int) {
	name := currentManifest(t, img)
	data, err := ftReadFile(img, name)
	if err != nil {
		t.Fatal(err)
	}
	ends := recordEnds(t, data)
	if len(ends) < 2 {
		t.Fatalf("manifest has %d records", len(ends))
	}
	manifestBase := name[strings.LastIndexByte(name, '/')+1:]
	last := int(ends[len(ends)-2])
	t.Logf("%s: %d records, %d bytes", manifestBase, len(ends), len(data))
	rng := rand.New(rand.NewPCG(61, 62))
	for off := 0; off < len(data); off++ {
		if off < last && off%stride != 0 {
			continue // sample the earlier records
		}
		bit := uint(rng.IntN(8))
		fs := withFile(t, img, name, flipBit(data, off, bit))
		state, err := openState(fs, keys)
		what := fmt.Sprintf("bit %d flipped at offset %d of %d in %s (last record starts at %d)", bit, off, len(data), manifestBase, last)
		if off < last {
			if !errors.Is(err, ErrCorruption) || !strings.Contains(err.Error(), manifestBase) {
				t.Fatalf("%s: want an ErrCorruption naming the manifest, got %v", what, err)
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrCorruption) {
				t.Fatalf("%s: open failed without ErrCorruption: %v", what, err)
			}
			continue
		}
		if !maps.Equal(state, want) {
			t.Fatalf("%s: opened with a different state (acknowledged writes lost):\n%s", what, ftDiff(state, want))
		}
	}
}

// TestCorruptDirectory damages the directory rather than a file's bytes.
func TestCorruptDirectory(t *testing.T) {
	img, want, keys := manifestImage(t)
	manifest := currentManifest(t, img)
	tables, err := ftFiles(img, "db", "table")
	if err != nil || len(tables) == 0 {
		t.Fatalf("tables: %v %v", tables, err)
	}
	table := "db/" + tables[0]
	if state, err := openState(img.CrashClone(), keys); err != nil || !maps.Equal(state, want) {
		t.Fatalf("undamaged: %v", err)
	}
	tableData, err := ftReadFile(img, table)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		damage func(fs *vfs.MemFS) error
		// mention is a string the error must contain.
		mention string
		// notExistOK accepts an error wrapping os.ErrNotExist instead of
		// ErrCorruption.
		notExistOK bool
	}{
		{"CURRENT names a missing manifest", func(fs *vfs.MemFS) error {
			return ftWriteFile(fs, "db/CURRENT", []byte("MANIFEST-999999\n"))
		}, "MANIFEST-999999", true},
		{"CURRENT's manifest removed", func(fs *vfs.MemFS) error {
			return ftRemoveFile(fs, manifest)
		}, strings.TrimPrefix(manifest, "db/"), true},
		{"CURRENT holds garbage", func(fs *vfs.MemFS) error {
			return ftWriteFile(fs, "db/CURRENT", []byte("garbage\n"))
		}, "CURRENT", false},
		{"CURRENT empty", func(fs *vfs.MemFS) error {
			return ftWriteFile(fs, "db/CURRENT", nil)
		}, "CURRENT", false},
		{"CURRENT without newline", func(fs *vfs.MemFS) error {
			return ftWriteFile(fs, "db/CURRENT", []byte(strings.TrimPrefix(manifest, "db/")))
		}, "CURRENT", false},
		{"CURRENT missing", func(fs *vfs.MemFS) error {
			return ftRemoveFile(fs, "db/CURRENT")
		}, "CURRENT", false},
		{"manifest empty", func(fs *vfs.MemFS) error {
			return ftWriteFile(fs, manifest, nil)
		}, strings.TrimPrefix(manifest, "db/"), false},
		{"table deleted", func(fs *vfs.MemFS) error {
			return ftRemoveFile(fs, table)
		}, tables[0], false},
		{"table truncated", func(fs *vfs.MemFS) error {
			return ftWriteFile(fs, table, tableData[:len(tableData)/2])
		}, tables[0], false},
		{"table zeroed", func(fs *vfs.MemFS) error {
			return ftWriteFile(fs, table, make([]byte, len(tableData)))
		}, tables[0], false},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			fs := img.CrashClone()
			if err := c.damage(fs); err != nil {
				t.Fatal(err)
			}
			before := fs.String()
			db, err := Open("db", corruptionOptions(fs))
			if err == nil {
				// Only damage that Open cannot see may let it succeed (a
				// table is read lazily); then reads must report it.
				if c.name != "table zeroed" {
					db.Close()
					t.Fatalf("open succeeded")
				}
				db.Close()
				if checkNoWrongValue(t, fs, want, keys, c.name) == 0 {
					t.Fatalf("no read reported the zeroed table")
				}
				return
			}
			if !errors.Is(err, ErrCorruption) && !(c.notExistOK && errors.Is(err, os.ErrNotExist)) {
				t.Fatalf("error wraps neither ErrCorruption nor (where allowed) os.ErrNotExist: %v", err)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("error does not name %s: %v", c.mention, err)
			}
			t.Logf("%v", err)
			// A refused Open changes nothing on disk.
			if after := fs.String(); after != before {
				t.Fatalf("a failed Open changed the directory:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
