//go:build linux && !arm

package vfs

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

var _ Mappable = osFile{}

func (f osFile) Preallocate(off, n int64) error {
	for {
		err := syscall.Fallocate(int(f.File.Fd()), 0, off, n)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "fallocate", Path: f.File.Name(), Err: err}
		}
		return nil
	}
}

func (f osFile) Map(off int64, n int) ([]byte, error) {
	if off%int64(os.Getpagesize()) != 0 {
		return nil, fmt.Errorf("vfs: map of %s at offset %d: not a multiple of the page size", f.File.Name(), off)
	}
	b, err := syscall.Mmap(int(f.File.Fd()), off, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, &os.PathError{Op: "mmap", Path: f.File.Name(), Err: err}
	}
	return b, nil
}

func (f osFile) Unmap(b []byte) error {
	if err := syscall.Munmap(b); err != nil {
		return &os.PathError{Op: "munmap", Path: f.File.Name(), Err: err}
	}
	return nil
}

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault the pages in
// writable, as a write to each would.
const madvPopulateWrite = 23

func (f osFile) Prefault(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := syscall.Madvise(b, madvPopulateWrite); err != nil {
		if err == syscall.EINVAL { // a kernel before 5.14
			return fmt.Errorf("madvise %s: %w (%v)", f.File.Name(), ErrPrefaultUnsupported, err)
		}
		return &os.PathError{Op: "madvise", Path: f.File.Name(), Err: err}
	}
	return nil
}

func (f osFile) WriteBack(off, n int64) error {
	for {
		err := syscall.SyncFileRange(int(f.File.Fd()), off, n, syncFileRangeWrite)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "sync_file_range", Path: f.File.Name(), Err: err}
		}
		return nil
	}
}

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE.
const syncFileRangeWrite = 2

func (f osFile) Truncate(size int64) error { return f.File.Truncate(size) }

// WriteAt writes p at off with pwrite(2), as os.File.WriteAt does, except
// that a write the file takes only part of before an error (no space, the
// file size limit) reports the bytes it took: os.File.WriteAt reports none
// of them.
func (f osFile) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		m, err := syscall.Pwrite(int(f.File.Fd()), p[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if m > 0 {
			n += m
		}
		if err != nil {
			return n, &os.PathError{Op: "pwrite", Path: f.File.Name(), Err: err}
		}
		if m <= 0 {
			return n, &os.PathError{Op: "pwrite", Path: f.File.Name(), Err: io.ErrShortWrite}
		}
	}
	return n, nil
}
