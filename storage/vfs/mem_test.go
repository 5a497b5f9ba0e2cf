package vfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// forEachFS runs a test against the OS filesystem and both MemFS flavours, so
// that MemFS is held to the OS's behaviour for everything but durability.
func forEachFS(t *testing.T, f func(t *testing.T, fs FS, dir string)) {
	t.Run("os", func(t *testing.T) { f(t, Default, t.TempDir()) })
	t.Run("mem", func(t *testing.T) { f(t, NewMem(), "/data") })
	t.Run("strictmem", func(t *testing.T) { f(t, NewStrictMem(), "data") })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, fs FS, name, data string, sync bool) {
	t.Helper()
	f, err := fs.Create(name)
	must(t, err)
	_, err = f.Write([]byte(data))
	must(t, err)
	if sync {
		must(t, f.Sync())
	}
	must(t, f.Close())
}

// readFile returns the contents of name, or "<missing>" if it does not
// exist.
func readFile(t *testing.T, fs FS, name string) string {
	t.Helper()
	f, err := fs.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return "<missing>"
	}
	must(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	must(t, err)
	return string(b)
}

func syncDir(t *testing.T, fs FS, dir string) {
	t.Helper()
	d, err := fs.OpenDir(dir)
	must(t, err)
	must(t, d.Sync())
	must(t, d.Close())
}

func list(t *testing.T, fs FS, dir string) string {
	t.Helper()
	names, err := fs.List(dir)
	must(t, err)
	return strings.Join(names, ",")
}

func TestFSConformance(t *testing.T) {
	forEachFS(t, func(t *testing.T, fs FS, dir string) {
		sub := fs.PathJoin(dir, "a", "b")
		must(t, fs.MkdirAll(sub, 0o755))
		must(t, fs.MkdirAll(sub, 0o755)) // idempotent

		name := fs.PathJoin(sub, "f")
		f, err := fs.Create(name)
		must(t, err)
		for _, s := range []string{"hello", " ", "world"} {
			n, err := f.Write([]byte(s))
			must(t, err)
			if n != len(s) {
				t.Fatalf("wrote %d of %d", n, len(s))
			}
		}
		if sz, err := f.Size(); err != nil || sz != 11 {
			t.Fatalf("Size = %d, %v", sz, err)
		}
		// A Create handle reads too.
		buf := make([]byte, 5)
		if n, err := f.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
			t.Fatalf("ReadAt = %d %v %q", n, err, buf)
		}
		if n, err := f.ReadAt(buf, 8); n != 3 || err != io.EOF || string(buf[:n]) != "rld" {
			t.Fatalf("short ReadAt = %d %v %q", n, err, buf[:n])
		}
		if n, err := f.ReadAt(buf, 11); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt at end = %d %v", n, err)
		}
		must(t, f.Sync())
		must(t, f.Close())
		if err := f.Close(); err == nil {
			t.Fatal("second Close succeeded")
		}
		if _, err := f.Write([]byte("x")); err == nil {
			t.Fatal("Write after Close succeeded")
		}

		// Sequential reads.
		r, err := fs.Open(name)
		must(t, err)
		var got []byte
		for {
			n, err := r.Read(buf[:4])
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			must(t, err)
		}
		if string(got) != "hello world" {
			t.Fatalf("Read = %q", got)
		}
		if _, err := r.Write([]byte("x")); err == nil {
			t.Fatal("Write on a handle from Open succeeded")
		}
		must(t, r.Close())

		fi, err := fs.Stat(name)
		must(t, err)
		if fi.Name() != "f" || fi.Size() != 11 || fi.IsDir() {
			t.Fatalf("Stat = %s %d %v", fi.Name(), fi.Size(), fi.IsDir())
		}
		fi, err = fs.Stat(sub)
		must(t, err)
		if fi.Name() != "b" || !fi.IsDir() {
			t.Fatalf("Stat dir = %s %v", fi.Name(), fi.IsDir())
		}

		// Missing files.
		missing := fs.PathJoin(sub, "nope")
		if _, err := fs.Open(missing); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Open missing: %v", err)
		}
		if _, err := fs.Stat(missing); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Stat missing: %v", err)
		}
		if err := fs.Remove(missing); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Remove missing: %v", err)
		}
		if err := fs.Rename(missing, name); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Rename missing: %v", err)
		}
		if _, err := fs.Create(fs.PathJoin(dir, "nodir", "f")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Create in missing dir: %v", err)
		}
		if _, err := fs.List(fs.PathJoin(dir, "nodir")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("List missing dir: %v", err)
		}
		if _, err := fs.OpenDir(name); err == nil && fs != Default {
			// The OS opens a file with OpenDir (it is a plain open);
			// MemFS insists on a directory.
			t.Fatal("OpenDir of a file succeeded")
		}
		if err := fs.MkdirAll(fs.PathJoin(name, "x"), 0o755); err == nil {
			t.Fatal("MkdirAll under a file succeeded")
		}

		// Listing is sorted.
		writeFile(t, fs, fs.PathJoin(sub, "c"), "c", false)
		writeFile(t, fs, fs.PathJoin(sub, "a"), "a", false)
		if got := list(t, fs, sub); got != "a,c,f" {
			t.Fatalf("List = %s", got)
		}

		// Rename replaces its target.
		must(t, fs.Rename(fs.PathJoin(sub, "a"), name))
		if got := list(t, fs, sub); got != "c,f" {
			t.Fatalf("List after rename = %s", got)
		}
		if got := readFile(t, fs, name); got != "a" {
			t.Fatalf("renamed file = %q", got)
		}
		// Rename across directories.
		must(t, fs.Rename(name, fs.PathJoin(dir, "a", "moved")))
		if got := readFile(t, fs, fs.PathJoin(dir, "a", "moved")); got != "a" {
			t.Fatalf("moved file = %q", got)
		}

		// Create truncates.
		writeFile(t, fs, fs.PathJoin(sub, "c"), "", false)
		if got := readFile(t, fs, fs.PathJoin(sub, "c")); got != "" {
			t.Fatalf("truncated file = %q", got)
		}

		// A removed file stays readable through an open handle.
		h, err := fs.Open(fs.PathJoin(dir, "a", "moved"))
		must(t, err)
		must(t, fs.Remove(fs.PathJoin(dir, "a", "moved")))
		if n, err := h.ReadAt(buf[:1], 0); n != 1 || buf[0] != 'a' {
			t.Fatalf("read of removed file: %d %v", n, err)
		}
		must(t, h.Close())

		// Directories: a non-empty one cannot be removed, an empty one can.
		if err := fs.Remove(sub); err == nil {
			t.Fatal("Remove of a non-empty directory succeeded")
		}
		must(t, fs.Remove(fs.PathJoin(sub, "c")))
		must(t, fs.Remove(sub))
		if got := list(t, fs, fs.PathJoin(dir, "a")); got != "" {
			t.Fatalf("List = %q", got)
		}

		// Locks are exclusive until closed.
		lockName := fs.PathJoin(dir, "LOCK")
		l, err := fs.Lock(lockName)
		must(t, err)
		if _, err := fs.Lock(lockName); err == nil {
			t.Fatal("second Lock succeeded")
		}
		if _, err := fs.Stat(lockName); err != nil {
			t.Fatalf("Lock did not create its file: %v", err)
		}
		must(t, l.Close())
		l, err = fs.Lock(lockName)
		must(t, err)
		must(t, l.Close())
	})
}

func TestMemPaths(t *testing.T) {
	fs := NewMem()
	if got := fs.PathJoin("a", "b/", "../c", "d"); got != "a/c/d" {
		t.Fatalf("PathJoin = %q", got)
	}
	must(t, fs.MkdirAll("x/y", 0o755))
	writeFile(t, fs, "/x/y/f", "1", false)
	for _, name := range []string{"x/y/f", "/x/y/f", "./x//y/./f", "x/z/../y/f"} {
		if got := readFile(t, fs, name); got != "1" {
			t.Fatalf("%s: %q", name, got)
		}
	}
	for _, root := range []string{"", ".", "/"} {
		if got := list(t, fs, root); got != "x" {
			t.Fatalf("List(%q) = %q", root, got)
		}
	}
	if _, err := fs.Create("/"); err == nil {
		t.Fatal("Create of the root succeeded")
	}
	if err := fs.Remove(""); err == nil {
		t.Fatal("Remove of the root succeeded")
	}
	if err := fs.Rename("x", "x/y/z"); err == nil {
		t.Fatal("Rename of a directory into itself succeeded")
	}
	// Renaming a directory moves its subtree.
	must(t, fs.Rename("x", "w"))
	if got := readFile(t, fs, "w/y/f"); got != "1" {
		t.Fatalf("after dir rename: %q", got)
	}
}

// newStrictDir returns a strict FS holding a durable, empty directory "db".
func newStrictDir(t *testing.T) *MemFS {
	fs := NewStrictMem()
	must(t, fs.MkdirAll("db", 0o755))
	syncDir(t, fs, "")
	return fs
}

func TestStrictUnsyncedDataIsLost(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	syncDir(t, fs, "db")
	f.Write([]byte("abc"))
	must(t, f.Sync())
	f.Write([]byte("def"))

	if got := readFile(t, fs, "db/f"); got != "abcdef" {
		t.Fatalf("live = %q", got)
	}
	c := fs.CrashClone()
	if got := readFile(t, c, "db/f"); got != "abc" {
		t.Fatalf("after crash = %q, want the synced prefix", got)
	}
	// Size and Stat after the crash agree with the data.
	fi, err := c.Stat("db/f")
	must(t, err)
	if fi.Size() != 3 {
		t.Fatalf("Stat after crash = %d", fi.Size())
	}
	// Sync through another handle (here a read-only one) counts too.
	r, err := fs.Open("db/f")
	must(t, err)
	must(t, r.Sync())
	must(t, r.Close())
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "abcdef" {
		t.Fatalf("after second sync = %q", got)
	}
	must(t, f.Close())
}

func TestStrictNeverSyncedFileIsEmpty(t *testing.T) {
	fs := newStrictDir(t)
	writeFile(t, fs, "db/f", "data", false)
	syncDir(t, fs, "db")
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "" {
		t.Fatalf("after crash = %q, want empty", got)
	}
}

func TestStrictCreateNeedsDirSync(t *testing.T) {
	fs := newStrictDir(t)
	writeFile(t, fs, "db/f", "data", true)
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "<missing>" {
		t.Fatalf("synced file in unsynced dir after crash = %q", got)
	}
	syncDir(t, fs, "db")
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "data" {
		t.Fatalf("after dir sync and crash = %q", got)
	}
}

func TestStrictDirSyncDoesNotSyncData(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	f.Write([]byte("x"))
	syncDir(t, fs, "db")
	c := fs.CrashClone()
	if got := list(t, c, "db"); got != "f" {
		t.Fatalf("List after crash = %q", got)
	}
	if got := readFile(t, c, "db/f"); got != "" {
		t.Fatalf("data after crash = %q", got)
	}
	must(t, f.Close())
}

func TestStrictRenameNeedsDirSync(t *testing.T) {
	fs := newStrictDir(t)
	writeFile(t, fs, "db/old", "old", true)
	writeFile(t, fs, "db/tmp", "new", true)
	syncDir(t, fs, "db")

	must(t, fs.Rename("db/tmp", "db/old"))
	c := fs.CrashClone()
	if got := list(t, c, "db"); got != "old,tmp" {
		t.Fatalf("List after unsynced rename and crash = %q", got)
	}
	if a, b := readFile(t, c, "db/old"), readFile(t, c, "db/tmp"); a != "old" || b != "new" {
		t.Fatalf("after unsynced rename and crash: old=%q tmp=%q", a, b)
	}

	syncDir(t, fs, "db")
	c = fs.CrashClone()
	if got := list(t, c, "db"); got != "old" {
		t.Fatalf("List after synced rename and crash = %q", got)
	}
	if got := readFile(t, c, "db/old"); got != "new" {
		t.Fatalf("after synced rename and crash: %q", got)
	}
}

func TestStrictRenameIntoNewNameUndone(t *testing.T) {
	fs := newStrictDir(t)
	writeFile(t, fs, "db/a", "A", true)
	syncDir(t, fs, "db")
	must(t, fs.Rename("db/a", "db/b"))
	c := fs.CrashClone()
	if got := list(t, c, "db"); got != "a" {
		t.Fatalf("List = %q", got)
	}
	if got := readFile(t, c, "db/a"); got != "A" {
		t.Fatalf("a = %q", got)
	}
}

func TestStrictRenameAcrossDirs(t *testing.T) {
	fs := newStrictDir(t)
	must(t, fs.MkdirAll("db/sub", 0o755))
	syncDir(t, fs, "db")
	writeFile(t, fs, "db/f", "F", true)
	syncDir(t, fs, "db")
	must(t, fs.Rename("db/f", "db/sub/f"))
	// Only the destination synced: the file has both names after a crash.
	syncDir(t, fs, "db/sub")
	c := fs.CrashClone()
	if a, b := readFile(t, c, "db/f"), readFile(t, c, "db/sub/f"); a != "F" || b != "F" {
		t.Fatalf("f=%q sub/f=%q", a, b)
	}
	syncDir(t, fs, "db")
	c = fs.CrashClone()
	if a, b := readFile(t, c, "db/f"), readFile(t, c, "db/sub/f"); a != "<missing>" || b != "F" {
		t.Fatalf("f=%q sub/f=%q", a, b)
	}
}

func TestStrictRemoveNeedsDirSync(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	f.Write([]byte("durable"))
	must(t, f.Sync())
	syncDir(t, fs, "db")
	must(t, fs.Remove("db/f"))
	// Writes through a handle to the removed inode still reach its durable
	// content if synced, as on a real filesystem.
	f.Write([]byte("+more"))
	must(t, f.Sync())
	must(t, f.Close())
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "durable+more" {
		t.Fatalf("after unsynced remove and crash = %q", got)
	}
	syncDir(t, fs, "db")
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "<missing>" {
		t.Fatalf("after synced remove and crash = %q", got)
	}
}

func TestStrictCreateOverExisting(t *testing.T) {
	fs := newStrictDir(t)
	writeFile(t, fs, "db/f", "old", true)
	syncDir(t, fs, "db")
	writeFile(t, fs, "db/f", "new", true)
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "old" {
		t.Fatalf("after re-create without dir sync = %q", got)
	}
	syncDir(t, fs, "db")
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "new" {
		t.Fatalf("after re-create with dir sync = %q", got)
	}
}

func TestStrictMkdirNeedsParentSync(t *testing.T) {
	fs := NewStrictMem()
	must(t, fs.MkdirAll("a/b", 0o755))
	writeFile(t, fs, "a/b/f", "x", true)
	syncDir(t, fs, "a/b")
	syncDir(t, fs, "a")
	if got := list(t, fs.CrashClone(), ""); got != "" {
		t.Fatalf("root after crash = %q", got)
	}
	syncDir(t, fs, "/")
	c := fs.CrashClone()
	if got := readFile(t, c, "a/b/f"); got != "x" {
		t.Fatalf("after syncing every level = %q", got)
	}
}

func TestStrictCrashCloneIsIndependent(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	syncDir(t, fs, "db")
	f.Write([]byte("123"))
	must(t, f.Sync())

	c := fs.CrashClone()
	// The original goes on.
	f.Write([]byte("456"))
	must(t, f.Sync())
	writeFile(t, fs, "db/g", "g", true)
	syncDir(t, fs, "db")
	if got := readFile(t, c, "db/f"); got != "123" {
		t.Fatalf("clone saw later writes: %q", got)
	}
	if got := list(t, c, "db"); got != "f" {
		t.Fatalf("clone saw later entries: %q", got)
	}
	// The clone is strict and writable, and its writes do not leak back.
	cf, err := c.Create("db/h")
	must(t, err)
	cf.Write([]byte("h"))
	must(t, cf.Close())
	if got := readFile(t, c.CrashClone(), "db/h"); got != "<missing>" {
		t.Fatalf("clone is not strict: %q", got)
	}
	if got := readFile(t, fs, "db/h"); got != "<missing>" {
		t.Fatalf("clone write leaked: %q", got)
	}
	// Locks are per FS.
	l, err := fs.Lock("db/LOCK")
	must(t, err)
	l2, err := c.Lock("db/LOCK")
	must(t, err)
	must(t, l2.Close())
	must(t, l.Close())
	if got := readFile(t, fs, "db/f"); got != "123456" {
		t.Fatalf("original = %q", got)
	}
	must(t, f.Close())
}

func TestStrictCloneSharesNoMutableBytes(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	syncDir(t, fs, "db")
	f.Write([]byte("0123456789"))
	must(t, f.Sync())
	// Unsynced bytes land in the spare capacity right behind the synced
	// prefix that the clone shares.
	f.Write([]byte("orig"))
	c := fs.CrashClone()
	f.Write([]byte("more"))
	if got := readFile(t, c, "db/f"); got != "0123456789" {
		t.Fatalf("clone f = %q", got)
	}
	// After an in-place reset, new files never write into old arrays.
	fs.ResetToSynced()
	g, err := fs.Create("db/g")
	must(t, err)
	g.Write([]byte("xxxx"))
	must(t, g.Close())
	if got := readFile(t, fs, "db/f"); got != "0123456789" {
		t.Fatalf("reset f = %q", got)
	}
}

func TestResetToSynced(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	syncDir(t, fs, "db")
	f.Write([]byte("keep"))
	must(t, f.Sync())
	f.Write([]byte("lose"))
	writeFile(t, fs, "db/unsynced", "u", true)
	lock, err := fs.Lock("db/LOCK")
	must(t, err)

	fs.ResetToSynced()

	if got := readFile(t, fs, "db/f"); got != "keep" {
		t.Fatalf("f after reset = %q", got)
	}
	if got := list(t, fs, "db"); got != "f" {
		t.Fatalf("List after reset = %q", got)
	}
	// Old handles are dead, but can be closed.
	if _, err := f.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("stale Write: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("stale Sync: %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("stale ReadAt: %v", err)
	}
	must(t, f.Close())
	// Locks were released; a stale lock's Close does not release the new
	// holder's lock.
	l2, err := fs.Lock("db/LOCK")
	must(t, err)
	must(t, lock.Close())
	if _, err := fs.Lock("db/LOCK"); err == nil {
		t.Fatal("stale Close released the new lock")
	}
	must(t, l2.Close())
	// The FS is still strict after the reset.
	writeFile(t, fs, "db/g", "g", true)
	fs.ResetToSynced()
	if got := readFile(t, fs, "db/g"); got != "<missing>" {
		t.Fatalf("g = %q", got)
	}
}

func TestSetIgnoreSyncs(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	syncDir(t, fs, "db")
	f.Write([]byte("a"))
	must(t, f.Sync())
	fs.SetIgnoreSyncs(true)
	f.Write([]byte("b"))
	must(t, f.Sync())
	writeFile(t, fs, "db/g", "g", true)
	syncDir(t, fs, "db")
	c := fs.CrashClone()
	if got := readFile(t, c, "db/f"); got != "a" {
		t.Fatalf("f = %q", got)
	}
	if got := list(t, c, "db"); got != "f" {
		t.Fatalf("List = %q", got)
	}
	fs.SetIgnoreSyncs(false)
	must(t, f.Sync())
	if got := readFile(t, fs.CrashClone(), "db/f"); got != "ab" {
		t.Fatalf("f after syncs resumed = %q", got)
	}
	must(t, f.Close())
}

func TestNonStrictCrashLosesNothing(t *testing.T) {
	fs := NewMem()
	must(t, fs.MkdirAll("db/sub", 0o755))
	writeFile(t, fs, "db/a", "A", false)
	writeFile(t, fs, "db/b", "B", false)
	writeFile(t, fs, "db/sub/c", "C", false)
	must(t, fs.Rename("db/a", "db/b"))
	writeFile(t, fs, "db/d", "D", false)
	must(t, fs.Remove("db/d"))
	c := fs.CrashClone()
	if got := list(t, c, "db"); got != "b,sub" {
		t.Fatalf("List = %q", got)
	}
	if b, sc := readFile(t, c, "db/b"), readFile(t, c, "db/sub/c"); b != "A" || sc != "C" {
		t.Fatalf("b=%q sub/c=%q", b, sc)
	}
	fs.ResetToSynced()
	if got := readFile(t, fs, "db/b"); got != "A" {
		t.Fatalf("b after reset = %q", got)
	}
}

func TestMemString(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/f")
	must(t, err)
	f.Write([]byte("abc"))
	must(t, f.Sync())
	f.Write([]byte("d"))
	s := fs.String()
	for _, want := range []string{"/db/\n", "/db/f 4 bytes, 3 synced (entry not synced)"} {
		if !strings.Contains(s, want) {
			t.Fatalf("String() = %q, want it to contain %q", s, want)
		}
	}
	must(t, f.Close())
}

// TestMemConcurrentAppendRead has one writer append numbered records while
// readers read everything written so far and crash clones are taken; run
// with -race.
func TestMemConcurrentAppendRead(t *testing.T) {
	fs := newStrictDir(t)
	f, err := fs.Create("db/log")
	must(t, err)
	syncDir(t, fs, "db")

	const recLen, nrec = 16, 2000
	record := func(i int) []byte { return []byte(fmt.Sprintf("%015d\n", i)) }
	var all []byte
	for i := range nrec {
		all = append(all, record(i)...)
	}
	check := func(data []byte) error {
		if len(data)%recLen != 0 {
			// A reader may see a Write's bytes only whole: Write is atomic.
			return fmt.Errorf("size %d is not a whole number of records", len(data))
		}
		if len(data) > len(all) || !bytes.Equal(data, all[:len(data)]) {
			return fmt.Errorf("%d bytes are not the records written", len(data))
		}
		return nil
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range nrec {
			if _, err := f.Write(record(i)); err != nil {
				errs <- err
				return
			}
			if i%100 == 0 {
				if err := f.Sync(); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := fs.Open("db/log")
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			for {
				select {
				case <-done:
					return
				default:
				}
				sz, err := r.Size()
				if err != nil {
					errs <- err
					return
				}
				buf := make([]byte, sz)
				if n, err := r.ReadAt(buf, 0); int64(n) != sz || (err != nil && err != io.EOF) {
					errs <- fmt.Errorf("ReadAt = %d, %v; want %d", n, err, sz)
					return
				}
				if err := check(buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			c := fs.CrashClone()
			r, err := c.Open("db/log")
			if err != nil {
				errs <- err
				return
			}
			data, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				errs <- err
				return
			}
			if err := check(data); err != nil {
				errs <- fmt.Errorf("clone: %w", err)
				return
			}
			// Appending to the clone must not race with the original.
			w, err := c.Create(fmt.Sprintf("db/x%d", i))
			if err != nil {
				errs <- err
				return
			}
			w.Write([]byte("clone data"))
			w.Close()
		}
	}()
	// Namespace churn alongside.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			name := fmt.Sprintf("db/tmp%d", i%5)
			w, err := fs.Create(name)
			if err != nil {
				errs <- err
				return
			}
			w.Write([]byte("t"))
			w.Close()
			if _, err := fs.List("db"); err != nil {
				errs <- err
				return
			}
			if err := fs.Rename(name, "db/renamed"); err != nil {
				errs <- err
				return
			}
			d, _ := fs.OpenDir("db")
			d.Sync()
			d.Close()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	must(t, f.Sync())
	if got := readFile(t, fs.CrashClone(), "db/log"); len(got) != recLen*nrec || check([]byte(got)) != nil {
		t.Fatalf("final clone has %d bytes", len(got))
	}
	must(t, f.Close())
}

func TestMemConcurrentLock(t *testing.T) {
	fs := NewMem()
	var wg sync.WaitGroup
	var held atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				l, err := fs.Lock("LOCK")
				if err != nil {
					continue
				}
				if held.Add(1) != 1 {
					t.Error("two holders of one lock")
				}
				runtime.Gosched()
				held.Add(-1)
				l.Close()
			}
		}()
	}
	wg.Wait()
}
