// Package vfs is the storage engine's only door to the disk. The engine
// reaches files through FS so that tests can swap the operating system's
// filesystem for a strict in-memory one that forgets unsynced data on a
// simulated crash (NewStrictMem), or for one that injects errors (errorfs).
package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// File is an open file. Writes are appended at the current offset; ReadAt
// reads at any offset. Sync makes every write so far durable.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync flushes the file's data to stable storage.
	Sync() error
	// Size returns the file's current size in bytes.
	Size() (int64, error)
}

// Mappable is implemented by files that can be written through a shared
// memory mapping: the operating system's files on Linux (but 32-bit ARM;
// see mmap_linux.go). The commit log uses it so that an append is a memory
// copy into the page cache instead of a write(2) system call. Bytes copied
// into a shared mapping are in the page cache at once, so a crash of the
// process loses none of them, exactly like bytes handed to write(2), and
// Sync (fsync) makes them durable like any other dirty page of the file.
// Wrappers (the in-memory and error-injecting filesystems) do not implement
// it, and the log falls back to Write.
type Mappable interface {
	// Preallocate makes [off, off+n) part of the file, allocated on disk
	// and reading as zeros, extending its size if needed. On most
	// filesystems (ext4, xfs) writing through a mapping of that range then
	// needs no more space; on copy-on-write ones (btrfs, zfs) it still
	// may, and a write the filesystem cannot back faults (SIGBUS), which
	// writers must turn into an error (see the commit log's guarded copy).
	Preallocate(off, n int64) error
	// Map maps n bytes of the file from off (a multiple of the page size)
	// for reading and writing, shared with the file.
	Map(off int64, n int) ([]byte, error)
	// Unmap releases a mapping returned by Map.
	Unmap(b []byte) error
	// Prefault makes the pages of b, a part of a mapping returned by Map,
	// present and writable (and so dirty) in one call, so that writing
	// them takes no page fault each. An error wrapping
	// ErrPrefaultUnsupported means only that the kernel cannot do it (the
	// pages will fault one at a time); any other error means the pages
	// cannot be backed (no space, an I/O error) and must not be written.
	Prefault(b []byte) error
	// Truncate sets the file's size.
	Truncate(size int64) error
	// WriteBack starts writing the dirty pages of [off, off+n) to disk and
	// returns without waiting for them (sync_file_range with
	// SYNC_FILE_RANGE_WRITE), so that a later Sync has less to write. It
	// makes nothing durable: only Sync does.
	WriteBack(off, n int64) error
	// WriteAt writes p at off with pwrite(2), through the page cache the
	// mappings share: bytes written either way are seen by both. A long
	// write costs less this way than through a mapping whose pages fault
	// in one at a time.
	WriteAt(p []byte, off int64) (n int, err error)
}

// FS is a filesystem.
type FS interface {
	// Create creates or truncates the named file and opens it for writing.
	Create(name string) (File, error)
	// Open opens the named file for reading.
	Open(name string) (File, error)
	// OpenDir opens a directory so that it can be synced: a created, renamed
	// or removed name is durable only after its directory has been synced.
	OpenDir(name string) (File, error)
	// Remove removes the named file.
	Remove(name string) error
	// Rename atomically renames a file, replacing newname if it exists.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(dir string, perm os.FileMode) error
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// Stat returns the size of the named file.
	Stat(name string) (os.FileInfo, error)
	// Lock takes an exclusive lock on the named file, creating it if needed,
	// so that two engines never open the same directory. Closing the returned
	// Closer releases the lock.
	Lock(name string) (io.Closer, error)
	// PathJoin joins path elements.
	PathJoin(elem ...string) string
}

// Default is the operating system's filesystem.
var Default FS = osFS{}

// ErrPrefaultUnsupported is wrapped by a Mappable's Prefault error when the
// kernel cannot prefault (Linux before 5.14): a hint not taken, not a
// failure.
var ErrPrefaultUnsupported = errors.New("prefault not supported by this kernel")

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenDir(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error                 { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error     { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, p os.FileMode) error { return os.MkdirAll(dir, p) }
func (osFS) Stat(name string) (os.FileInfo, error)    { return os.Stat(name) }
func (osFS) PathJoin(elem ...string) string           { return filepath.Join(elem...) }

func (osFS) List(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

type osLock struct{ f *os.File }

func (l osLock) Close() error {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	return l.f.Close()
}

func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "lock", Path: name, Err: err}
	}
	return osLock{f}, nil
}
