package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/storage/wal"
)

// Checkpoints. DB.Checkpoint writes a consistent, point-in-time copy of the
// engine into another directory while the engine keeps serving:
//
//  1. It queues a memtable rotation behind every write already in the
//     commit queue (the rotation Flush uses), then waits until the
//     memtables that were immutable at that moment, the rotated one
//     included, are flushed to tables. Every write acknowledged before
//     Checkpoint was called is then in a table. It waits only for those
//     memtables, not for the immutable list to be empty, so a steady
//     stream of writes (which keeps filling new memtables) cannot starve
//     it.
//  2. Under the engine's lock it takes the current version (the set of
//     tables of every level) with a reference, and the visible sequence
//     number. Flushes install tables oldest memtable first and a
//     compaction replaces tables by tables holding the same visible
//     history, so that version holds exactly the writes up to some point
//     of the commit order: a prefix of the history, later than every write
//     acknowledged before the call. Writes go on meanwhile; those after
//     that point are not in the checkpoint.
//  3. The reference keeps every table of the version on disk (the engine
//     deletes a table only once no version lists it), so a compaction
//     racing the checkpoint cannot remove a file before it is linked. Each
//     table is hard-linked into the checkpoint (tables are immutable once
//     renamed into place, so a link is a copy that costs nothing); when the
//     link fails (another filesystem, or a filesystem without links, such
//     as the in-memory one of the tests) it is copied and fsynced.
//  4. It writes a manifest describing exactly those tables (no commit log,
//     so Open replays nothing), fsyncs it, then CURRENT (temporary name,
//     fsync, rename) and fsyncs the directory and its parent. CURRENT comes
//     last: a checkpoint cut short by a crash has no CURRENT, and Open
//     refuses such a directory ("engine files but no CURRENT") rather than
//     open it empty.
//
// The result is an engine directory that Open opens as it is. It does not
// hold quarantined tables (nor their records: the checkpoint does not know
// their ranges were lost; the cluster's anti-entropy repairs them on the
// node that restores it, as on the original), the commit logs, or LOCK.
// The engine has no options file: its options come from the caller.

// ErrCheckpointDirNotEmpty is wrapped by the error Checkpoint returns when
// its target directory exists and holds anything.
var ErrCheckpointDirNotEmpty = errors.New("ringkv/storage: checkpoint directory exists and is not empty")

// CheckpointInfo describes a checkpoint DB.Checkpoint wrote.
type CheckpointInfo struct {
	// Dir is the checkpoint's directory.
	Dir string
	// Tables is how many tables it holds, Bytes their total size.
	Tables int
	Bytes  uint64
	// Linked tables were hard-linked, Copied ones copied (the link failed).
	Linked, Copied int
	// Seq is the engine's visible sequence number when the table set was
	// taken: the checkpoint holds the history up to at most this point,
	// and every write acknowledged before Checkpoint was called.
	Seq uint64
	// Manifest is the name of the checkpoint's manifest.
	Manifest string
	// Duration is how long the checkpoint took.
	Duration time.Duration
}

// linkFS is implemented by filesystems that can hard-link a file. The
// operating system's filesystem (vfs.Default) is handled by osLink, since
// package vfs's FS has no link operation.
type linkFS interface {
	Link(oldname, newname string) error
}

// osLink hard-links on the operating system's filesystem. Tests replace it
// to make links fail (as across filesystems) and check the copy fallback.
var osLink = os.Link

// checkpointTestHook, if set, runs after Checkpoint took its version and
// before it links the tables: tests compact there to check that the
// version's reference keeps the files.
var checkpointTestHook func()

// errNoLink: the filesystem cannot hard-link; copy instead.
var errNoLink = errors.New("filesystem has no hard links")

func (db *DB) linkFile(oldname, newname string) error {
	if l, ok := db.fs.(linkFS); ok {
		return l.Link(oldname, newname)
	}
	if db.fs == vfs.Default {
		return osLink(oldname, newname)
	}
	return errNoLink
}

// checkpointDirs holds the directories a checkpoint is being written into,
// so that two concurrent checkpoints (of one engine or of two) into the
// same empty directory do not both take it.
var checkpointDirs = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// Checkpoint writes a consistent copy of the engine into dir, which must
// not exist or be empty, and returns what it holds. Writes may continue
// meanwhile: every write acknowledged before Checkpoint was called is in
// the checkpoint, writes made while it runs may or may not be (as a
// prefix of the commit order: if a write is in it, so is every write
// committed before it). See the comment at the top of checkpoint.go.
//
// On failure it removes what it wrote (and dir, if it created it), so the
// call can be retried with the same directory.
func (db *DB) Checkpoint(dir string) (info CheckpointInfo, err error) {
	start := time.Now()
	info.Dir = dir
	key := filepath.Clean(dir)
	if key == filepath.Clean(db.dirname) {
		return info, fmt.Errorf("checkpoint into %s: that is the engine's own directory", dir)
	}
	checkpointDirs.Lock()
	if checkpointDirs.m[key] {
		checkpointDirs.Unlock()
		return info, fmt.Errorf("checkpoint into %s: %w (another checkpoint is being written there)", dir, ErrCheckpointDirNotEmpty)
	}
	checkpointDirs.m[key] = true
	checkpointDirs.Unlock()
	defer func() {
		checkpointDirs.Lock()
		delete(checkpointDirs.m, key)
		checkpointDirs.Unlock()
	}()

	created, err := db.prepareCheckpointDir(dir)
	if err != nil {
		return info, fmt.Errorf("checkpoint into %s: %w", dir, err)
	}
	var written []string // paths to remove if the checkpoint fails
	defer func() {
		if err == nil {
			return
		}
		for i := len(written) - 1; i >= 0; i-- {
			db.fs.Remove(written[i])
		}
		if created {
			db.fs.Remove(dir)
		}
	}()

	v, seq, err := db.checkpointVersion()
	if err != nil {
		return info, fmt.Errorf("checkpoint into %s: %w", dir, err)
	}
	defer v.unref()
	info.Seq = seq
	if checkpointTestHook != nil {
		checkpointTestHook()
	}

	maxNum := uint64(0)
	for level := range v.levels {
		for _, f := range v.levels[level] {
			num := f.meta.Num
			maxNum = max(maxNum, num)
			src := db.path(tableName(num))
			dst := db.fs.PathJoin(dir, tableName(num))
			written = append(written, dst)
			linkErr := db.linkFile(src, dst)
			if linkErr == nil {
				info.Linked++
			} else {
				if cerr := db.copyTable(src, dst, f.meta.Size); cerr != nil {
					if f.quarantined.Load() {
						return info, fmt.Errorf("checkpoint into %s: table %s was quarantined as damaged while the checkpoint ran; take it again: %w", dir, tableName(num), cerr)
					}
					return info, fmt.Errorf("checkpoint into %s: table %s: link failed (%v), then copy failed: %w", dir, tableName(num), linkErr, cerr)
				}
				info.Copied++
			}
			info.Tables++
			info.Bytes += f.meta.Size
		}
	}

	// The manifest takes the number after the last table's, the (never
	// created) commit log the next: Open replays no log and numbers new
	// files after both.
	manifestNum := maxNum + 1
	edit := v.snapshotEdit()
	edit.LogNumber, edit.HasLogNumber = manifestNum+1, true
	edit.NextFileNumber, edit.HasNextFileNumber = manifestNum+2, true
	edit.LastSeq, edit.HasLastSeq = base.SeqNum(seq), true
	info.Manifest = manifestName(manifestNum)
	mpath := db.fs.PathJoin(dir, info.Manifest)
	written = append(written, mpath)
	mf, err := db.fs.Create(mpath)
	if err != nil {
		return info, fmt.Errorf("checkpoint into %s: create manifest: %w", dir, err)
	}
	w := wal.NewWriter(mf)
	err = w.WriteRecords([]byte(manifestMagic), edit.Encode(nil))
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return info, fmt.Errorf("checkpoint into %s: write manifest %s: %w", dir, info.Manifest, err)
	}
	// The tables' and the manifest's names must be durable before CURRENT
	// names the manifest.
	if err := db.syncDirPath(dir); err != nil {
		return info, fmt.Errorf("checkpoint into %s: %w", dir, err)
	}
	tmp := db.fs.PathJoin(dir, currentName+tmpSuffix)
	written = append(written, tmp, db.fs.PathJoin(dir, currentName))
	cf, err := db.fs.Create(tmp)
	if err != nil {
		return info, fmt.Errorf("checkpoint into %s: create %s: %w", dir, tmp, err)
	}
	_, err = cf.Write([]byte(info.Manifest + "\n"))
	if err == nil {
		err = cf.Sync()
	}
	if cerr := cf.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = db.fs.Rename(tmp, db.fs.PathJoin(dir, currentName))
	}
	if err != nil {
		return info, fmt.Errorf("checkpoint into %s: write %s: %w", dir, currentName, err)
	}
	if err := db.syncDirPath(dir); err != nil {
		return info, fmt.Errorf("checkpoint into %s: %w", dir, err)
	}
	info.Duration = time.Since(start)
	db.opts.Logf("storage: checkpoint of %d table(s), %d bytes (%d linked, %d copied) at seq %d into %s in %s",
		info.Tables, info.Bytes, info.Linked, info.Copied, info.Seq, dir, info.Duration)
	return info, nil
}

// prepareCheckpointDir makes sure dir exists and is empty, creating it (and
// making its entry durable) if it does not exist.
func (db *DB) prepareCheckpointDir(dir string) (created bool, err error) {
	names, err := db.fs.List(dir)
	switch {
	case err == nil && len(names) > 0:
		return false, fmt.Errorf("%w (it holds %d entries, e.g. %s)", ErrCheckpointDirNotEmpty, len(names), names[0])
	case err == nil:
		return false, nil
	case !errors.Is(err, os.ErrNotExist):
		return false, fmt.Errorf("list directory: %w", err)
	}
	if err := db.fs.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("create directory: %w", err)
	}
	// Its entry in its parent must be durable too. (MkdirAll may have made
	// parents as well; a crash may lose those, which leaves no checkpoint,
	// never a partial one that opens.)
	if err := db.syncDirPath(filepath.Dir(dir)); err != nil {
		db.fs.Remove(dir)
		return false, err
	}
	return true, nil
}

// checkpointVersion waits until every write acknowledged before the call
// is in a table, then returns the current version, referenced (the caller
// unrefs it), and the visible sequence number at that moment.
func (db *DB) checkpointVersion() (*version, uint64, error) {
	// Behind every write queued so far: the active memtable becomes
	// immutable (nothing happens if it is empty).
	if err := db.enqueue(&pendingWrite{rotate: true}); err != nil {
		return nil, 0, fmt.Errorf("rotate memtable: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	// The memtables immutable now hold every acknowledged write not yet in
	// a table; flushes take them oldest first. Wait for these only.
	waitFor := make(map[*memTable]bool, len(db.imm))
	for _, m := range db.imm {
		waitFor[m] = true
	}
	pending := func() bool {
		for _, m := range db.imm {
			if waitFor[m] {
				return true
			}
		}
		return false
	}
	for pending() && db.bgErr == nil && !db.closing {
		db.cond.Wait()
	}
	if db.bgErr != nil {
		return nil, 0, db.bgErr
	}
	if db.closing {
		return nil, 0, ErrClosed
	}
	v := db.current
	v.ref()
	return v, db.visibleSeq.Load(), nil
}

// copyTable copies a table to dst and fsyncs it, checking it has the size
// the manifest records.
func (db *DB) copyTable(src, dst string, size uint64) (err error) {
	in, err := db.fs.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := db.fs.Create(dst)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", dst, cerr)
		}
	}()
	// Through plain Reader/Writer: vfs files have no ReadFrom/WriteTo.
	n, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 256<<10))
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if uint64(n) != size {
		return fmt.Errorf("copy %s: %d bytes, the manifest says %d", src, n, size)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return nil
}

// syncDirPath fsyncs a directory on the engine's filesystem.
func (db *DB) syncDirPath(dir string) error {
	d, err := db.fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return d.Close()
}
