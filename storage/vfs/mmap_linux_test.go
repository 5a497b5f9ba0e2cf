//go:build linux && !arm

package vfs

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A write the file takes only part of (here: past the file size limit)
// reports the bytes it took, so that a log can count them: os.File.WriteAt
// would report none.
func TestWriteAtReportsAPartialWrite(t *testing.T) {
	f, err := Default.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, ok := f.(Mappable)
	if !ok {
		t.Skip("the operating system's files are not mappable here")
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	const limit = 8192
	lim := old
	lim.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("cannot lower the file size limit: %v", err)
	}
	p := bytes.Repeat([]byte("x"), 3*limit)
	n, werr := m.WriteAt(p, 100)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if werr == nil || n != limit-100 {
		t.Fatalf("WriteAt past the file size limit: %d bytes, %v; want %d bytes and an error", n, werr, limit-100)
	}
	fi, err := os.Stat(f.(osFile).Name())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != limit {
		t.Fatalf("the file is %d bytes, want %d", fi.Size(), limit)
	}
}
