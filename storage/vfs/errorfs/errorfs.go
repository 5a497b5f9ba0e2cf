// Package errorfs wraps a vfs.FS so that tests can make chosen filesystem
// operations fail, to check that the storage engine reports I/O errors
// instead of losing or corrupting data.
//
// Every operation through the wrapper is first shown to an Injector, which
// either lets it through or returns an error; a failed operation is not
// performed on the wrapped FS (except that a failed Write may be let write a
// prefix, see WithPartialWrites). The error returned to the caller is an
// *Error naming the operation and path; errors.Is(err, ErrInjected) holds
// for every such error, so a test can tell injected failures from real bugs.
//
// The usual sweep: run a workload once with a never-failing Counter to learn
// how many operations it makes, then for each n in [0, count) run it again
// with OnIndex(n) (the disk dies at operation n) or OnIndexOnce(n) (a single
// transient failure), and check what the engine promised still holds. The
// count is deterministic only if the workload's filesystem calls are, so
// background goroutines make a sweep sample rather than enumerate.
package errorfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/ringkv/ringkv/storage/vfs"
)

// ErrInjected is wrapped by every error this package injects.
var ErrInjected = errors.New("errorfs: injected error")

// ErrNoSpace is what a full disk returns: errors.Is(ErrNoSpace,
// syscall.ENOSPC) and errors.Is(ErrNoSpace, ErrInjected) both hold.
var ErrNoSpace = fmt.Errorf("%w: %w", ErrInjected, syscall.ENOSPC)

// OpKind is a kind of filesystem operation.
type OpKind uint8

const (
	// OpCreate is FS.Create.
	OpCreate OpKind = iota
	// OpOpen is FS.Open and FS.OpenDir (Op.Dir tells them apart).
	OpOpen
	// OpWrite is File.Write.
	OpWrite
	// OpSync is File.Sync of a file or of a directory (Op.Dir).
	OpSync
	// OpRename is FS.Rename.
	OpRename
	// OpRemove is FS.Remove.
	OpRemove
	// OpRead is File.Read and File.ReadAt.
	OpRead
	// OpMkdir is FS.MkdirAll.
	OpMkdir
	// OpList is FS.List.
	OpList
	// OpStat is FS.Stat and File.Size.
	OpStat
	// OpLock is FS.Lock.
	OpLock

	numOpKinds
)

var opNames = [numOpKinds]string{"create", "open", "write", "sync", "rename", "remove", "read", "mkdir", "list", "stat", "lock"}

func (k OpKind) String() string {
	if k < numOpKinds {
		return opNames[k]
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Op describes one operation about to be made. File.Close and FS.PathJoin
// are never shown to an injector.
type Op struct {
	Kind OpKind
	// Path is the file or directory operated on; for OpRename, the old name.
	Path string
	// NewPath is the new name of an OpRename.
	NewPath string
	// Dir is set for OpenDir and for Sync of a handle from OpenDir.
	Dir bool
	// Len is the length of the buffer of an OpRead or OpWrite.
	Len int
}

// Injector decides whether an operation fails. MaybeError returns nil to
// let op through, or the error to fail it with. It is called concurrently
// from every goroutine using the FS.
type Injector interface {
	MaybeError(op Op) error
}

// InjectorFunc adapts a function to Injector.
type InjectorFunc func(op Op) error

// MaybeError implements Injector.
func (f InjectorFunc) MaybeError(op Op) error { return f(op) }

// Error is returned for an injected failure.
type Error struct {
	Op  Op
	Err error // what the Injector returned
}

func (e *Error) Error() string {
	p := e.Op.Path
	if e.Op.Kind == OpRename {
		p += " -> " + e.Op.NewPath
	}
	msg := e.Err.Error()
	if !errors.Is(e.Err, ErrInjected) {
		msg = ErrInjected.Error() + ": " + msg
	}
	return fmt.Sprintf("%s %s: %s", e.Op.Kind, p, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every *Error match ErrInjected, even one whose Injector returned
// an error of its own.
func (e *Error) Is(target error) bool { return target == ErrInjected }

// kindSet is a bit set of OpKinds; the zero set means all kinds.
type kindSet uint32

func kindsOf(ops []OpKind) kindSet {
	var s kindSet
	for _, k := range ops {
		s |= 1 << k
	}
	return s
}

func (s kindSet) has(k OpKind) bool { return s == 0 || s&(1<<k) != 0 }

// IndexInjector numbers the matching operations from 0 in the order they
// reach it and fails the one numbered n, and with OnIndex every later one
// too. Operations of other kinds pass uncounted.
type IndexInjector struct {
	n        int64
	sticky   bool
	kinds    kindSet
	count    atomic.Int64
	injected atomic.Int64
}

// OnIndex returns an injector that fails the n-th (0-based) operation of the
// given kinds (all kinds if none) and every matching one after it: the disk
// dies. A negative n never fails.
func OnIndex(n int64, ops ...OpKind) *IndexInjector {
	return &IndexInjector{n: n, sticky: true, kinds: kindsOf(ops)}
}

// OnIndexOnce returns an injector that fails only the n-th (0-based)
// operation of the given kinds (all kinds if none): a transient error.
func OnIndexOnce(n int64, ops ...OpKind) *IndexInjector {
	return &IndexInjector{n: n, kinds: kindsOf(ops)}
}

// Counter returns an injector that never fails and counts the operations of
// the given kinds (all kinds if none), to size a sweep.
func Counter(ops ...OpKind) *IndexInjector { return OnIndex(-1, ops...) }

// MaybeError implements Injector.
func (i *IndexInjector) MaybeError(op Op) error {
	if !i.kinds.has(op.Kind) {
		return nil
	}
	idx := i.count.Add(1) - 1
	if i.n < 0 || idx < i.n || (idx > i.n && !i.sticky) {
		return nil
	}
	i.injected.Add(1)
	return fmt.Errorf("%w (%s #%d)", ErrInjected, op.Kind, idx)
}

// Count returns how many matching operations have been seen, failed or not.
func (i *IndexInjector) Count() int64 { return i.count.Load() }

// Injected returns how many errors have been injected.
func (i *IndexInjector) Injected() int64 { return i.injected.Load() }

// DiskFullInjector fails writes with ErrNoSpace once they would take the
// bytes written through it past a capacity. Other operations pass; in
// particular removing files frees nothing (raise the capacity instead).
type DiskFullInjector struct {
	capacity atomic.Int64
	used     atomic.Int64
	injected atomic.Int64
}

// DiskFull returns an injector modelling a disk with room for capacity
// bytes of writes. A write that does not fit fails whole (unless the
// wrapper was given WithPartialWrites) and uses no space; smaller later
// writes may still fit.
func DiskFull(capacity int64) *DiskFullInjector {
	d := &DiskFullInjector{}
	d.capacity.Store(capacity)
	return d
}

// MaybeError implements Injector.
func (d *DiskFullInjector) MaybeError(op Op) error {
	if op.Kind != OpWrite {
		return nil
	}
	for {
		used := d.used.Load()
		if used+int64(op.Len) > d.capacity.Load() {
			d.injected.Add(1)
			return ErrNoSpace
		}
		if d.used.CompareAndSwap(used, used+int64(op.Len)) {
			return nil
		}
	}
}

// SetCapacity changes the capacity, e.g. to free space (math.MaxInt64) or
// to fill the disk now (0).
func (d *DiskFullInjector) SetCapacity(c int64) { d.capacity.Store(c) }

// Used returns the bytes written through the injector so far.
func (d *DiskFullInjector) Used() int64 { return d.used.Load() }

// Injected returns how many writes have failed.
func (d *DiskFullInjector) Injected() int64 { return d.injected.Load() }

// Option configures Wrap.
type Option func(*errorFS)

// WithPartialWrites makes a failing Write first write a prefix of its buffer
// to the wrapped file: fn returns its length, clamped to [0, op.Len]. It
// models a torn write. Without it a failing Write writes nothing. (A
// DiskFullInjector does not count the bytes of such a prefix as used.)
func WithPartialWrites(fn func(op Op) int) Option {
	return func(fs *errorFS) { fs.partial = fn }
}

// Wrap returns fs with failures chosen by inj injected. A nil inj never
// fails.
func Wrap(fs vfs.FS, inj Injector, opts ...Option) vfs.FS {
	e := &errorFS{fs: fs, inj: inj}
	for _, o := range opts {
		o(e)
	}
	return e
}

type errorFS struct {
	fs      vfs.FS
	inj     Injector
	partial func(Op) int
}

func (e *errorFS) maybe(op Op) error {
	if e.inj == nil {
		return nil
	}
	if err := e.inj.MaybeError(op); err != nil {
		return &Error{Op: op, Err: err}
	}
	return nil
}

func (e *errorFS) Create(name string) (vfs.File, error) {
	if err := e.maybe(Op{Kind: OpCreate, Path: name}); err != nil {
		return nil, err
	}
	f, err := e.fs.Create(name)
	if err != nil {
		return nil, err
	}
	return &errorFile{fs: e, f: f, path: name}, nil
}

func (e *errorFS) Open(name string) (vfs.File, error) {
	if err := e.maybe(Op{Kind: OpOpen, Path: name}); err != nil {
		return nil, err
	}
	f, err := e.fs.Open(name)
	if err != nil {
		return nil, err
	}
	return &errorFile{fs: e, f: f, path: name}, nil
}

func (e *errorFS) OpenDir(name string) (vfs.File, error) {
	if err := e.maybe(Op{Kind: OpOpen, Path: name, Dir: true}); err != nil {
		return nil, err
	}
	f, err := e.fs.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return &errorFile{fs: e, f: f, path: name, dir: true}, nil
}

func (e *errorFS) Remove(name string) error {
	if err := e.maybe(Op{Kind: OpRemove, Path: name}); err != nil {
		return err
	}
	return e.fs.Remove(name)
}

func (e *errorFS) Rename(oldname, newname string) error {
	if err := e.maybe(Op{Kind: OpRename, Path: oldname, NewPath: newname}); err != nil {
		return err
	}
	return e.fs.Rename(oldname, newname)
}

func (e *errorFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := e.maybe(Op{Kind: OpMkdir, Path: dir}); err != nil {
		return err
	}
	return e.fs.MkdirAll(dir, perm)
}

func (e *errorFS) List(dir string) ([]string, error) {
	if err := e.maybe(Op{Kind: OpList, Path: dir}); err != nil {
		return nil, err
	}
	return e.fs.List(dir)
}

func (e *errorFS) Stat(name string) (os.FileInfo, error) {
	if err := e.maybe(Op{Kind: OpStat, Path: name}); err != nil {
		return nil, err
	}
	return e.fs.Stat(name)
}

func (e *errorFS) Lock(name string) (io.Closer, error) {
	if err := e.maybe(Op{Kind: OpLock, Path: name}); err != nil {
		return nil, err
	}
	return e.fs.Lock(name)
}

func (e *errorFS) PathJoin(elem ...string) string { return e.fs.PathJoin(elem...) }

type errorFile struct {
	fs   *errorFS
	f    vfs.File
	path string
	dir  bool
}

func (f *errorFile) Read(p []byte) (int, error) {
	if err := f.fs.maybe(Op{Kind: OpRead, Path: f.path, Len: len(p)}); err != nil {
		return 0, err
	}
	return f.f.Read(p)
}

func (f *errorFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.maybe(Op{Kind: OpRead, Path: f.path, Len: len(p)}); err != nil {
		return 0, err
	}
	return f.f.ReadAt(p, off)
}

func (f *errorFile) Write(p []byte) (int, error) {
	op := Op{Kind: OpWrite, Path: f.path, Len: len(p)}
	err := f.fs.maybe(op)
	if err == nil {
		return f.f.Write(p)
	}
	n := 0
	if f.fs.partial != nil {
		n = min(max(f.fs.partial(op), 0), len(p))
	}
	if n > 0 {
		w, werr := f.f.Write(p[:n])
		if werr != nil {
			return w, werr
		}
		n = w
	}
	return n, err
}

func (f *errorFile) Sync() error {
	if err := f.fs.maybe(Op{Kind: OpSync, Path: f.path, Dir: f.dir}); err != nil {
		return err
	}
	return f.f.Sync()
}

func (f *errorFile) Size() (int64, error) {
	if err := f.fs.maybe(Op{Kind: OpStat, Path: f.path}); err != nil {
		return 0, err
	}
	return f.f.Size()
}

// Close is never failed: the wrapped file is always closed, so injection
// cannot leak descriptors or locks.
func (f *errorFile) Close() error { return f.f.Close() }
