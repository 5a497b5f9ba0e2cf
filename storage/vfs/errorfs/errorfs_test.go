package errorfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// workload touches every operation kind once or more and stops at the first
// error, as an engine would.
func workload(fs vfs.FS) error {
	if err := fs.MkdirAll("db", 0o755); err != nil {
		return err
	}
	l, err := fs.Lock("db/LOCK")
	if err != nil {
		return err
	}
	defer l.Close()
	f, err := fs.Create("db/f")
	if err != nil {
		return err
	}
	defer f.Close()
	for _, s := range []string{"a", "bb", "ccc"} {
		if _, err := f.Write([]byte(s)); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if _, err := f.Size(); err != nil {
		return err
	}
	d, err := fs.OpenDir("db")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return err
	}
	if err := fs.Rename("db/f", "db/g"); err != nil {
		return err
	}
	if _, err := fs.List("db"); err != nil {
		return err
	}
	if _, err := fs.Stat("db/g"); err != nil {
		return err
	}
	r, err := fs.Open("db/g")
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.ReadAll(r); err != nil {
		return err
	}
	if _, err := r.ReadAt(make([]byte, 1), 0); err != nil {
		return err
	}
	return fs.Remove("db/g")
}

// workloadOps is how many operations workload makes when nothing fails.
const workloadOps = 18

func TestCounter(t *testing.T) {
	c := Counter()
	must(t, workload(Wrap(vfs.NewMem(), c)))
	if c.Count() != workloadOps || c.Injected() != 0 {
		t.Fatalf("Count = %d, Injected = %d", c.Count(), c.Injected())
	}
	w := Counter(OpWrite, OpSync)
	must(t, workload(Wrap(vfs.NewMem(), w)))
	if w.Count() != 5 {
		t.Fatalf("writes and syncs = %d, want 5", w.Count())
	}
	// A nil injector never fails.
	must(t, workload(Wrap(vfs.NewMem(), nil)))
}

func TestSweep(t *testing.T) {
	c := Counter()
	must(t, workload(Wrap(vfs.NewMem(), c)))
	n := c.Count()
	for i := range n {
		for _, once := range []bool{false, true} {
			inj := OnIndex(i)
			if once {
				inj = OnIndexOnce(i)
			}
			err := workload(Wrap(vfs.NewMem(), inj))
			if !errors.Is(err, ErrInjected) {
				t.Fatalf("op %d once=%v: err = %v", i, once, err)
			}
			// The workload stops at its first error, so exactly one
			// injection happens either way.
			if inj.Injected() != 1 || inj.Count() != i+1 {
				t.Fatalf("op %d once=%v: injected %d, counted %d", i, once, inj.Injected(), inj.Count())
			}
			var e *Error
			if !errors.As(err, &e) || e.Op.Path == "" {
				t.Fatalf("op %d: %v is not an *Error with a path", i, err)
			}
		}
	}
	inj := OnIndex(n)
	must(t, workload(Wrap(vfs.NewMem(), inj)))
	if inj.Injected() != 0 {
		t.Fatalf("injected %d past the end", inj.Injected())
	}
}

func TestStickyVersusOnce(t *testing.T) {
	write := func(fs vfs.FS) (fails []int) {
		f, err := fs.Create("f")
		must(t, err)
		defer f.Close()
		for i := range 5 {
			if _, err := f.Write([]byte{byte('0' + i)}); err != nil {
				fails = append(fails, i)
			}
		}
		return fails
	}
	mem := vfs.NewMem()
	if got := fmt.Sprint(write(Wrap(mem, OnIndex(2, OpWrite)))); got != "[2 3 4]" {
		t.Fatalf("sticky failures = %s", got)
	}
	if got := fmt.Sprint(write(Wrap(vfs.NewMem(), OnIndexOnce(2, OpWrite)))); got != "[2]" {
		t.Fatalf("once failures = %s", got)
	}
	// Failed writes wrote nothing.
	fi, err := mem.Stat("f")
	must(t, err)
	if fi.Size() != 2 {
		t.Fatalf("size = %d, want 2", fi.Size())
	}
	// Other kinds are neither failed nor counted.
	inj := OnIndex(0, OpRename)
	fs := Wrap(vfs.NewMem(), inj)
	must(t, fs.MkdirAll("d", 0o755))
	f, err := fs.Create("d/x")
	must(t, err)
	must(t, f.Close())
	if err := fs.Rename("d/x", "d/y"); !errors.Is(err, ErrInjected) {
		t.Fatalf("Rename: %v", err)
	}
	if inj.Count() != 1 {
		t.Fatalf("Count = %d", inj.Count())
	}
}

func TestFailedOpsAreNotPerformed(t *testing.T) {
	mem := vfs.NewMem()
	fs := Wrap(mem, InjectorFunc(func(op Op) error {
		if op.Kind == OpWrite {
			return nil
		}
		if op.Path == "fail" || op.Path == "dir/fail" || op.NewPath == "fail" {
			return ErrInjected
		}
		return nil
	}))
	if _, err := fs.Create("fail"); !errors.Is(err, ErrInjected) {
		t.Fatalf("Create: %v", err)
	}
	if _, err := mem.Stat("fail"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed Create made the file: %v", err)
	}
	f, err := fs.Create("ok")
	must(t, err)
	must(t, f.Close())
	if err := fs.Rename("ok", "fail"); !errors.Is(err, ErrInjected) {
		t.Fatalf("Rename: %v", err)
	}
	if _, err := mem.Stat("ok"); err != nil {
		t.Fatalf("failed Rename moved the file: %v", err)
	}
	if err := fs.MkdirAll("dir/fail", 0o755); !errors.Is(err, ErrInjected) {
		t.Fatalf("MkdirAll: %v", err)
	}
	if _, err := mem.Stat("dir"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed MkdirAll made a directory: %v", err)
	}
	// Errors of the wrapped FS pass through unchanged.
	if _, err := fs.Open("missing"); !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrInjected) {
		t.Fatalf("Open missing: %v", err)
	}
}

func TestFailedSyncIsNotDurable(t *testing.T) {
	mem := vfs.NewStrictMem()
	fs := Wrap(mem, OnIndex(1, OpSync))
	f, err := fs.Create("f")
	must(t, err)
	d, err := fs.OpenDir("")
	must(t, err)
	must(t, d.Sync()) // sync #0
	f.Write([]byte("data"))
	if err = f.Sync(); !errors.Is(err, ErrInjected) { // sync #1
		t.Fatalf("Sync: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Op.Kind != OpSync || e.Op.Dir {
		t.Fatalf("error op = %+v", e)
	}
	if err := d.Sync(); !errors.As(err, &e) || !e.Op.Dir { // sync #2, sticky
		t.Fatalf("dir Sync: %v", err)
	}
	must(t, f.Close())
	must(t, d.Close())
	c := mem.CrashClone()
	fi, err := c.Stat("f")
	must(t, err)
	if fi.Size() != 0 {
		t.Fatalf("size after crash = %d, want 0", fi.Size())
	}
}

func TestErrorMessage(t *testing.T) {
	fs := Wrap(vfs.NewMem(), OnIndex(0, OpRename))
	err := fs.Rename("a", "b")
	for _, want := range []string{"rename", "a -> b", "injected"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q lacks %q", err, want)
		}
	}
	// An injector's own error is kept, and still counts as injected.
	mine := errors.New("mine")
	fs = Wrap(vfs.NewMem(), InjectorFunc(func(Op) error { return mine }))
	err = fs.MkdirAll("x", 0o755)
	if !errors.Is(err, mine) || !errors.Is(err, ErrInjected) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "mkdir x") {
		t.Fatalf("err = %q", err)
	}
}

func TestDiskFull(t *testing.T) {
	mem := vfs.NewMem()
	inj := DiskFull(10)
	fs := Wrap(mem, inj)
	f, err := fs.Create("f")
	must(t, err)
	for _, s := range []string{"1234", "5678"} {
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.Write([]byte("abcd"))
	if n != 0 || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrInjected) {
		t.Fatalf("Write on a full disk = %d, %v", n, err)
	}
	// Other operations still work, and a small write still fits.
	must(t, f.Sync())
	if _, err := f.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("c")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write past capacity: %v", err)
	}
	if inj.Used() != 10 || inj.Injected() != 2 {
		t.Fatalf("Used = %d, Injected = %d", inj.Used(), inj.Injected())
	}
	inj.SetCapacity(1 << 20)
	if _, err := f.Write([]byte("cd")); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
	fi, err := mem.Stat("f")
	must(t, err)
	if fi.Size() != 12 {
		t.Fatalf("size = %d", fi.Size())
	}
}

func TestPartialWrites(t *testing.T) {
	mem := vfs.NewMem()
	fs := Wrap(mem, OnIndex(1, OpWrite), WithPartialWrites(func(op Op) int { return op.Len / 2 }))
	f, err := fs.Create("f")
	must(t, err)
	if _, err := f.Write([]byte("whole")); err != nil {
		t.Fatal(err)
	}
	n, err := f.Write([]byte("torn"))
	if n != 2 || !errors.Is(err, ErrInjected) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	must(t, f.Close())
	r, err := mem.Open("f")
	must(t, err)
	b, err := io.ReadAll(r)
	must(t, err)
	if string(b) != "wholeto" {
		t.Fatalf("contents = %q", b)
	}
	// Out-of-range lengths are clamped.
	fs = Wrap(vfs.NewMem(), OnIndex(0, OpWrite), WithPartialWrites(func(op Op) int { return op.Len + 100 }))
	f, err = fs.Create("f")
	must(t, err)
	if n, err := f.Write([]byte("abc")); n != 3 || err == nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
}

// TestCrashSweep is the intended use of both test filesystems together: an
// atomic file replacement (write temp, sync, rename, sync dir) run with the
// disk dying at every possible operation leaves, after a crash, either the
// old contents or the new, never a mix or nothing.
func TestCrashSweep(t *testing.T) {
	replace := func(fs vfs.FS, data string) error {
		f, err := fs.Create("db/CURRENT.tmp")
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Write([]byte(data)); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := fs.Rename("db/CURRENT.tmp", "db/CURRENT"); err != nil {
			return err
		}
		d, err := fs.OpenDir("db")
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	setup := func() *vfs.MemFS {
		mem := vfs.NewStrictMem()
		must(t, mem.MkdirAll("db", 0o755))
		root, err := mem.OpenDir("")
		must(t, err)
		must(t, root.Sync())
		must(t, replace(mem, "old"))
		return mem
	}
	c := Counter()
	must(t, replace(Wrap(setup(), c), "new"))
	for n := range c.Count() + 1 {
		mem := setup()
		replaceErr := replace(Wrap(mem, OnIndex(n)), "new")
		if (replaceErr == nil) != (n == c.Count()) {
			t.Fatalf("n=%d: err = %v", n, replaceErr)
		}
		crashed := mem.CrashClone()
		r, err := crashed.Open("db/CURRENT")
		must(t, err)
		b, err := io.ReadAll(r)
		must(t, err)
		r.Close()
		if got := string(b); got != "old" && got != "new" {
			t.Fatalf("n=%d: CURRENT = %q after crash\n%s", n, got, mem)
		}
		if replaceErr == nil && string(b) != "new" {
			t.Fatalf("n=%d: acknowledged replace lost", n)
		}
	}
}

func TestConcurrentCounting(t *testing.T) {
	inj := OnIndexOnce(500, OpWrite)
	fs := Wrap(vfs.NewMem(), inj)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fails := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := fs.Create(fmt.Sprintf("f%d", g))
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			for range 125 {
				if _, err := f.Write([]byte("x")); err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
				}
				// EOF if this goroutine's only write so far failed.
				if _, err := f.ReadAt(make([]byte, 1), 0); err != nil && err != io.EOF {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if inj.Count() != 1000 || inj.Injected() != 1 || fails != 1 {
		t.Fatalf("Count = %d, Injected = %d, fails = %d", inj.Count(), inj.Injected(), fails)
	}
}

func TestOpKindString(t *testing.T) {
	if OpSync.String() != "sync" || OpLock.String() != "lock" || OpKind(200).String() != "op(200)" {
		t.Fatal("bad OpKind names")
	}
}

func TestErrorText(t *testing.T) {
	fs := Wrap(vfs.NewMem(), DiskFull(0))
	f, err := fs.Create("db")
	must(t, err)
	_, err = f.Write([]byte("x"))
	if got, want := err.Error(), "write db: errorfs: injected error: no space left on device"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	err = Wrap(vfs.NewMem(), InjectorFunc(func(Op) error { return errors.New("boom") })).Remove("x")
	if got, want := err.Error(), "remove x: errorfs: injected error: boom"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
