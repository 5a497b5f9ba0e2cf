package vfs

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MemFS is an in-memory FS for tests. It is safe for concurrent use: a file
// may be appended to by one goroutine while others read it.
//
// Paths are slash-separated and all resolve against one root: "db/x",
// "/db/x" and "./db/x" name the same file. PathJoin is path.Join.
//
// # Durability
//
// A MemFS built by NewMem makes every change durable at once. One built by
// NewStrictMem models a disk with a volatile cache, so that tests can check
// that the engine syncs what it relies on. CrashClone (or ResetToSynced)
// yields the state a crash would leave on such a disk, which is exactly:
//
//   - A file's contents are durable up to the length they had at their last
//     File.Sync (on any handle to that file, read-only ones included). Bytes
//     appended after it are lost. A file that was never synced is empty.
//   - A directory's entries (the name -> inode mapping) are durable as of the
//     last Sync of a handle to that directory (from OpenDir, or Open of the
//     directory). Every entry change made after it is lost: Create, Rename,
//     Remove, MkdirAll, and the create done by Lock.
//   - The root always exists. Locks do not survive a crash.
//
// Consequences, for a crash with no directory sync since the change:
//
//   - A file created since then is gone, even if the file itself was
//     synced; so is a directory made by MkdirAll, with everything in it.
//   - A removed file is back, with its durable contents.
//   - A rename is undone: the old name is back, and the target name maps to
//     what it mapped to before (its old file, or nothing).
//   - Create over an existing name made a fresh inode, so the old file is
//     back with its durable contents. (Stricter than Linux, where an fsync of
//     the truncated file would do; syncing the directory is the portable
//     way.)
//
// Syncing a directory makes only its own entries durable: not its files'
// contents, and not its own entry in its parent.
//
// Rename of a file within one directory is atomic across a crash: one sync of
// that directory moves both the removal of the old name and the
// replacement of the new one. Across two directories each side becomes
// durable when its own directory is synced.
//
// Writes only append (File has no WriteAt or Truncate), so a file's durable
// contents are a prefix of its live contents and no copy is made on Sync or
// on a crash.
type MemFS struct {
	strict      bool
	ignoreSyncs atomic.Bool
	// gen is bumped by ResetToSynced; a handle opened in an earlier
	// generation refuses further use, as a process's descriptors do not
	// survive a crash.
	gen atomic.Uint64

	// mu guards the namespace: root, every directory's maps, and locks.
	mu    sync.Mutex
	root  *memNode
	locks map[string]*memLock
}

// memNode is an inode: a directory or a regular file.
type memNode struct {
	isDir bool

	// Directory state, guarded by MemFS.mu. children is the live view;
	// durable is the view as of the directory's last Sync.
	children map[string]*memNode
	durable  map[string]*memNode

	// File state, guarded by mu. data[:syncedLen] is durable. Bytes below
	// len(data) are never modified again (writes append and Create makes a
	// new inode), so a crash clone shares them without copying.
	mu        sync.RWMutex
	data      []byte
	syncedLen int
}

func newMemDir() *memNode {
	return &memNode{isDir: true, children: map[string]*memNode{}, durable: map[string]*memNode{}}
}

// NewMem returns an empty in-memory FS on which every change is durable as
// soon as it is made; a crash of it loses nothing.
func NewMem() *MemFS {
	return &MemFS{root: newMemDir(), locks: map[string]*memLock{}}
}

// NewStrictMem returns an empty in-memory FS on which file data is durable
// only once synced and directory entries only once their directory is
// synced. See MemFS for the exact rules and CrashClone to simulate a crash.
func NewStrictMem() *MemFS {
	fs := NewMem()
	fs.strict = true
	return fs
}

// SetIgnoreSyncs makes later Syncs (of files and directories) succeed
// without making anything durable, until it is called with false. A test
// uses it to freeze the durable state at some moment while the workload
// goes on, then crash. It has no effect on a FS from NewMem, where nothing
// waits for a sync.
func (fs *MemFS) SetIgnoreSyncs(ignore bool) { fs.ignoreSyncs.Store(ignore) }

// CrashClone returns a new MemFS holding what a crash at this moment would
// leave on disk: only durable file contents under durable directory
// entries. fs itself is unchanged and keeps working, so a test can take a
// snapshot of "the disk after a crash" while writers go on. The clone has
// the same strictness as fs, no locks, and shares no mutable state with it.
func (fs *MemFS) CrashClone() *MemFS {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	c := &MemFS{strict: fs.strict, locks: map[string]*memLock{}}
	c.root = cloneDurable(fs.root, map[*memNode]*memNode{})
	return c
}

// ResetToSynced crashes fs in place: it drops everything that was not
// durable, exactly as CrashClone does, and releases all locks. Handles
// opened before the reset fail every later call except Close (with an error
// wrapping os.ErrClosed), as descriptors do not outlive a crash.
func (fs *MemFS) ResetToSynced() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.root = cloneDurable(fs.root, map[*memNode]*memNode{})
	fs.locks = map[string]*memLock{}
	fs.gen.Add(1)
}

// cloneDurable copies the durable view of n. seen keeps an inode reachable
// by two durable names (possible after a cross-directory rename synced on
// one side only) a single inode in the clone.
func cloneDurable(n *memNode, seen map[*memNode]*memNode) *memNode {
	if m, ok := seen[n]; ok {
		return m
	}
	if n.isDir {
		m := newMemDir()
		seen[n] = m
		for name, c := range n.durable {
			cc := cloneDurable(c, seen)
			m.children[name] = cc
			m.durable[name] = cc
		}
		return m
	}
	n.mu.RLock()
	s := n.syncedLen
	// The full slice expression caps the clone so that its appends
	// reallocate instead of writing into the original's spare capacity.
	m := &memNode{data: n.data[:s:s], syncedLen: s}
	n.mu.RUnlock()
	seen[n] = m
	return m
}

// String renders the tree for test failure messages: one line per entry,
// with the live and durable size of files and a note on entries that a
// crash would lose.
func (fs *MemFS) String() string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var b strings.Builder
	seen := map[*memNode]bool{}
	var walk func(dir *memNode, prefix string)
	walk = func(dir *memNode, prefix string) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		for _, name := range slices.Sorted(maps.Keys(dir.children)) {
			c := dir.children[name]
			note := ""
			if dir.durable[name] != c {
				note = " (entry not synced)"
			}
			if c.isDir {
				fmt.Fprintf(&b, "%s%s/%s\n", prefix, name, note)
				walk(c, prefix+name+"/")
				continue
			}
			c.mu.RLock()
			fmt.Fprintf(&b, "%s%s %d bytes, %d synced%s\n", prefix, name, len(c.data), c.syncedLen, note)
			c.mu.RUnlock()
		}
		for _, name := range slices.Sorted(maps.Keys(dir.durable)) {
			if dir.children[name] == nil {
				fmt.Fprintf(&b, "%s%s (removed or renamed, not synced)\n", prefix, name)
			}
		}
	}
	walk(fs.root, "/")
	return b.String()
}

// splitPath cleans name against the root and returns its components; the
// root itself has none.
func splitPath(name string) []string {
	p := path.Clean("/" + name)
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

func pathErr(op, name string, err error) error {
	return &os.PathError{Op: op, Path: name, Err: err}
}

// walkDir returns the directory named by parts. Callers hold fs.mu.
func (fs *MemFS) walkDir(op, name string, parts []string) (*memNode, error) {
	dir := fs.root
	for _, p := range parts {
		c := dir.children[p]
		if c == nil {
			return nil, pathErr(op, name, os.ErrNotExist)
		}
		if !c.isDir {
			return nil, pathErr(op, name, syscall.ENOTDIR)
		}
		dir = c
	}
	return dir, nil
}

// parentOf returns the directory holding name and name's last component.
// Callers hold fs.mu.
func (fs *MemFS) parentOf(op, name string) (*memNode, string, error) {
	parts := splitPath(name)
	if len(parts) == 0 {
		return nil, "", pathErr(op, name, syscall.EINVAL)
	}
	dir, err := fs.walkDir(op, name, parts[:len(parts)-1])
	if err != nil {
		return nil, "", err
	}
	return dir, parts[len(parts)-1], nil
}

// lookup returns the node named by name, the root included. Callers hold
// fs.mu.
func (fs *MemFS) lookup(op, name string) (*memNode, error) {
	parts := splitPath(name)
	if len(parts) == 0 {
		return fs.root, nil
	}
	dir, err := fs.walkDir(op, name, parts[:len(parts)-1])
	if err != nil {
		return nil, err
	}
	n := dir.children[parts[len(parts)-1]]
	if n == nil {
		return nil, pathErr(op, name, os.ErrNotExist)
	}
	return n, nil
}

// setEntry and deleteEntry change a live directory entry; a non-strict FS
// makes the change durable at once. Callers hold fs.mu.
func (fs *MemFS) setEntry(dir *memNode, name string, n *memNode) {
	dir.children[name] = n
	if !fs.strict {
		dir.durable[name] = n
	}
}

func (fs *MemFS) deleteEntry(dir *memNode, name string) {
	delete(dir.children, name)
	if !fs.strict {
		delete(dir.durable, name)
	}
}

func (fs *MemFS) newHandle(n *memNode, name string, write bool) *memFile {
	return &memFile{fs: fs, gen: fs.gen.Load(), n: n, name: name, write: write}
}

// Create implements FS. It always makes a fresh, empty inode; see MemFS for
// what that means across a crash.
func (fs *MemFS) Create(name string) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir, base, err := fs.parentOf("create", name)
	if err != nil {
		return nil, err
	}
	if old := dir.children[base]; old != nil && old.isDir {
		return nil, pathErr("create", name, syscall.EISDIR)
	}
	n := &memNode{}
	fs.setEntry(dir, base, n)
	return fs.newHandle(n, name, true), nil
}

// Open implements FS. Opening a directory gives a handle that can be synced
// but not read.
func (fs *MemFS) Open(name string) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, err := fs.lookup("open", name)
	if err != nil {
		return nil, err
	}
	return fs.newHandle(n, name, false), nil
}

// OpenDir implements FS.
func (fs *MemFS) OpenDir(name string) (File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, err := fs.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if !n.isDir {
		return nil, pathErr("open", name, syscall.ENOTDIR)
	}
	return fs.newHandle(n, name, false), nil
}

// Remove implements FS. It removes a file or an empty directory. Open
// handles to a removed file keep working.
func (fs *MemFS) Remove(name string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir, base, err := fs.parentOf("remove", name)
	if err != nil {
		return err
	}
	n := dir.children[base]
	if n == nil {
		return pathErr("remove", name, os.ErrNotExist)
	}
	if n.isDir && len(n.children) > 0 {
		return pathErr("remove", name, syscall.ENOTEMPTY)
	}
	fs.deleteEntry(dir, base)
	return nil
}

// Rename implements FS with POSIX rules: a file may replace a file, a
// directory may replace an empty directory.
func (fs *MemFS) Rename(oldname, newname string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	linkErr := func(err error) error {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	oldDir, oldBase, err := fs.parentOf("rename", oldname)
	if err != nil {
		return linkErr(err)
	}
	src := oldDir.children[oldBase]
	if src == nil {
		return linkErr(os.ErrNotExist)
	}
	newDir, newBase, err := fs.parentOf("rename", newname)
	if err != nil {
		return linkErr(err)
	}
	if dst := newDir.children[newBase]; dst != nil {
		switch {
		case dst == src:
			// Same entry (or two names of one inode): nothing to do.
			return nil
		case dst.isDir && !src.isDir:
			return linkErr(syscall.EISDIR)
		case !dst.isDir && src.isDir:
			return linkErr(syscall.ENOTDIR)
		case dst.isDir && len(dst.children) > 0:
			return linkErr(syscall.ENOTEMPTY)
		}
	}
	if src.isDir {
		o, n := path.Clean("/"+oldname), path.Clean("/"+newname)
		if strings.HasPrefix(n, o+"/") {
			return linkErr(syscall.EINVAL)
		}
	}
	fs.deleteEntry(oldDir, oldBase)
	fs.setEntry(newDir, newBase, src)
	return nil
}

// MkdirAll implements FS. perm is ignored.
func (fs *MemFS) MkdirAll(dir string, perm os.FileMode) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := fs.root
	for _, p := range splitPath(dir) {
		c := d.children[p]
		if c == nil {
			c = newMemDir()
			fs.setEntry(d, p, c)
		} else if !c.isDir {
			return pathErr("mkdir", dir, syscall.ENOTDIR)
		}
		d = c
	}
	return nil
}

// List implements FS.
func (fs *MemFS) List(dir string) ([]string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, err := fs.lookup("open", dir)
	if err != nil {
		return nil, err
	}
	if !n.isDir {
		return nil, pathErr("readdirent", dir, syscall.ENOTDIR)
	}
	return slices.Sorted(maps.Keys(n.children)), nil
}

// Stat implements FS.
func (fs *MemFS) Stat(name string) (os.FileInfo, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, err := fs.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	base := "/"
	if parts := splitPath(name); len(parts) > 0 {
		base = parts[len(parts)-1]
	}
	return memFileInfo{name: base, size: n.size(), dir: n.isDir}, nil
}

// PathJoin implements FS.
func (fs *MemFS) PathJoin(elem ...string) string { return path.Join(elem...) }

// Lock implements FS. The lock is held until the returned Closer is closed
// or the FS is reset by ResetToSynced.
func (fs *MemFS) Lock(name string) (io.Closer, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	dir, base, err := fs.parentOf("lock", name)
	if err != nil {
		return nil, err
	}
	key := path.Clean("/" + name)
	if fs.locks[key] != nil {
		return nil, pathErr("lock", name, syscall.EAGAIN)
	}
	switch n := dir.children[base]; {
	case n == nil:
		fs.setEntry(dir, base, &memNode{})
	case n.isDir:
		return nil, pathErr("lock", name, syscall.EISDIR)
	}
	l := &memLock{fs: fs, key: key}
	fs.locks[key] = l
	return l, nil
}

type memLock struct {
	fs     *MemFS
	key    string
	closed bool // guarded by fs.mu
}

func (l *memLock) Close() error {
	l.fs.mu.Lock()
	defer l.fs.mu.Unlock()
	if l.closed {
		return pathErr("unlock", l.key, os.ErrClosed)
	}
	l.closed = true
	// After ResetToSynced the name may be locked again by someone else;
	// only release the lock if it is still this one.
	if l.fs.locks[l.key] == l {
		delete(l.fs.locks, l.key)
	}
	return nil
}

func (n *memNode) size() int64 {
	if n.isDir {
		return 0
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return int64(len(n.data))
}

type memFileInfo struct {
	name string
	size int64
	dir  bool
}

func (fi memFileInfo) Name() string { return fi.name }
func (fi memFileInfo) Size() int64  { return fi.size }
func (fi memFileInfo) Mode() os.FileMode {
	if fi.dir {
		return os.ModeDir | 0o755
	}
	return 0o644
}
func (fi memFileInfo) ModTime() time.Time { return time.Time{} }
func (fi memFileInfo) IsDir() bool        { return fi.dir }
func (fi memFileInfo) Sys() any           { return nil }

// memFile is a handle. Handles from Create can write; all can read (files
// only) and sync.
type memFile struct {
	fs     *MemFS
	gen    uint64
	n      *memNode
	name   string
	write  bool
	closed atomic.Bool

	offMu sync.Mutex
	off   int64 // Read's offset
}

func (f *memFile) check(op string) error {
	if f.closed.Load() {
		return pathErr(op, f.name, os.ErrClosed)
	}
	if f.gen != f.fs.gen.Load() {
		return pathErr(op, f.name, fmt.Errorf("%w (handle opened before a simulated crash)", os.ErrClosed))
	}
	return nil
}

func (f *memFile) Write(p []byte) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	if !f.write || f.n.isDir {
		return 0, pathErr("write", f.name, syscall.EBADF)
	}
	n := f.n
	n.mu.Lock()
	n.data = append(n.data, p...)
	if !f.fs.strict {
		n.syncedLen = len(n.data)
	}
	n.mu.Unlock()
	return len(p), nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.check("read"); err != nil {
		return 0, err
	}
	if f.n.isDir {
		return 0, pathErr("read", f.name, syscall.EISDIR)
	}
	if off < 0 {
		return 0, pathErr("read", f.name, syscall.EINVAL)
	}
	n := f.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	if off >= int64(len(n.data)) {
		return 0, io.EOF
	}
	c := copy(p, n.data[off:])
	if c < len(p) {
		return c, io.EOF
	}
	return c, nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.offMu.Lock()
	defer f.offMu.Unlock()
	c, err := f.ReadAt(p, f.off)
	f.off += int64(c)
	if err == io.EOF && c > 0 {
		// Like os.File, report EOF only on the call that reads nothing.
		err = nil
	}
	return c, err
}

func (f *memFile) Sync() error {
	if err := f.check("sync"); err != nil {
		return err
	}
	if f.fs.ignoreSyncs.Load() {
		return nil
	}
	n := f.n
	if n.isDir {
		f.fs.mu.Lock()
		n.durable = maps.Clone(n.children)
		f.fs.mu.Unlock()
		return nil
	}
	n.mu.Lock()
	n.syncedLen = len(n.data)
	n.mu.Unlock()
	return nil
}

func (f *memFile) Size() (int64, error) {
	if err := f.check("stat"); err != nil {
		return 0, err
	}
	return f.n.size(), nil
}

func (f *memFile) Close() error {
	if !f.closed.CompareAndSwap(false, true) {
		return pathErr("close", f.name, os.ErrClosed)
	}
	return nil
}
