package storage

import (
	"fmt"
	"time"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/manifest"
	"github.com/ringkv/ringkv/storage/sstable"
	"github.com/ringkv/ringkv/storage/vfs"
)

// flushLoop writes immutable memtables to L0 tables, oldest first.
func (db *DB) flushLoop() {
	defer db.bg.Done()
	db.mu.Lock()
	defer db.mu.Unlock()
	for {
		for (len(db.imm) == 0 || db.bgErr != nil) && !db.closing {
			db.cond.Wait()
		}
		if db.closing {
			return
		}
		m := db.imm[0]
		db.flushing = true
		db.mu.Unlock()
		err := db.flushMemtable(m)
		db.mu.Lock()
		db.flushing = false
		if err != nil {
			db.failLocked(fmt.Errorf("flush memtable: %w", err))
			continue
		}
		db.cond.Broadcast()
		db.maybeScheduleCompactionLocked()
	}
}

// flushMemtable writes m to an L0 table, records it in the manifest together
// with the new oldest live log, removes m from the immutable list and deletes
// the logs it no longer needs.
func (db *DB) flushMemtable(m *memTable) error {
	start := time.Now()
	var added []manifest.NewFile
	if !m.mt.Empty() {
		it := m.mt.NewIter()
		metas, err := db.writeTables(it, nil, db.newPacer())
		if cerr := it.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		for _, meta := range metas {
			added = append(added, manifest.NewFile{Level: 0, Meta: meta})
			db.m.flushBytes.Add(meta.Size)
		}
	}
	db.mu.Lock()
	// The oldest log still needed is that of the next memtable.
	nextLog := db.mem.logNum
	if len(db.imm) > 1 {
		nextLog = db.imm[1].logNum
	}
	db.mu.Unlock()
	edit := &manifest.VersionEdit{
		Added:        added,
		LogNumber:    nextLog,
		HasLogNumber: true,
		LastSeq:      m.maxSeq,
		HasLastSeq:   true,
	}
	if err := db.logAndApply(edit, func() {
		db.imm = db.imm[1:]
		db.logNumber = nextLog
	}); err != nil {
		return err
	}
	m.unref() // the engine's reference; readers may still hold theirs
	db.m.flushes.Add(1)
	db.opts.Logf("storage: flushed memtable (log %d) to %d table(s) in %s", m.logNum, len(added), time.Since(start))
	db.deleteObsoleteLogs(nextLog)
	return nil
}

// deleteObsoleteLogs removes commit logs numbered below keep.
func (db *DB) deleteObsoleteLogs(keep uint64) {
	names, err := db.fs.List(db.dirname)
	if err != nil {
		return
	}
	for _, name := range names {
		if kind, num, ok := parseFileName(name); ok && kind == "log" && num < keep {
			if err := db.fs.Remove(db.path(name)); err != nil {
				db.opts.Logf("storage: remove obsolete log %s: %v", name, err)
			}
		}
	}
}

// writeTables writes the entries of it to new tables, cutting a table when
// it reaches TargetFileSize at a user-key boundary (never splitting one user
// key's versions across tables). keep, if non-nil, decides per entry whether
// it is written; pace, if non-nil, holds the work to its share of a
// processor. Each table is written under a temporary name, fsynced and
// renamed; the directory is fsynced once at the end.
func (db *DB) writeTables(it base.InternalIterator, keep func(ikey []byte) bool, pace *pacer) ([]manifest.FileMeta, error) {
	var metas []manifest.FileMeta
	var (
		w       *sstable.Writer
		f       vfs.File
		num     uint64
		lastKey []byte
	)
	finish := func() error {
		meta, err := w.Finish()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write table %s: %w", tableName(num), err)
		}
		if err := db.fs.Rename(db.path(tableName(num)+tmpSuffix), db.path(tableName(num))); err != nil {
			return fmt.Errorf("rename table %s: %w", tableName(num), err)
		}
		metas = append(metas, manifest.FileMeta{
			Num: num, Size: meta.Size,
			Smallest: meta.Smallest, Largest: meta.Largest,
			SmallestSeq: meta.SmallestSeq, LargestSeq: meta.LargestSeq,
		})
		w, f = nil, nil
		return nil
	}
	// On failure no table of this call is kept: none is in a version yet,
	// and an aborted compaction must leave no partial output behind.
	fail := func(err error) ([]manifest.FileMeta, error) {
		if f != nil {
			f.Close()
			db.fs.Remove(db.path(tableName(num) + tmpSuffix))
		}
		for _, m := range metas {
			db.fs.Remove(db.path(tableName(m.Num)))
		}
		return nil, err
	}
	entries := 0
	for ok := it.First(); ok; ok = it.Next() {
		if entries++; entries%paceEvery == 0 {
			pace.step()
		}
		ikey := it.Key()
		if keep != nil && !keep(ikey) {
			continue
		}
		if w != nil && w.EstimatedSize() >= uint64(db.opts.TargetFileSize) &&
			string(base.UserKey(ikey)) != string(lastKey) {
			if err := finish(); err != nil {
				return fail(err)
			}
		}
		if w == nil {
			db.mu.Lock()
			num = db.nextFileNum
			db.nextFileNum++
			db.mu.Unlock()
			var err error
			f, err = db.fs.Create(db.path(tableName(num) + tmpSuffix))
			if err != nil {
				return fail(fmt.Errorf("create table %s: %w", tableName(num), err))
			}
			w = sstable.NewWriter(f, sstable.WriterOptions{
				BlockSize:       db.opts.BlockSize,
				RestartInterval: db.opts.BlockRestartInterval,
				BloomBitsPerKey: db.opts.BloomBitsPerKey,
				Compression:     uint8(db.opts.Compression),
				BytesPerSync:    db.opts.BytesPerSync,
			})
		}
		if err := w.Add(ikey, it.Value()); err != nil {
			return fail(fmt.Errorf("write table %s: %w", tableName(num), err))
		}
		lastKey = append(lastKey[:0], base.UserKey(ikey)...)
	}
	if err := it.Error(); err != nil {
		return fail(err)
	}
	if w != nil {
		if err := finish(); err != nil {
			return fail(err)
		}
	}
	if len(metas) > 0 {
		if err := db.syncDir(); err != nil {
			return nil, err
		}
	}
	return metas, nil
}

// logAndApply writes edit to the manifest, fsyncs it and installs the new
// version; then, with db.mu held, it runs also (which may change other
// state that must switch at the same moment, such as the immutable list).
// A manifest write error fails the engine.
func (db *DB) logAndApply(edit *manifest.VersionEdit, also func()) error {
	db.manifestMu.Lock()
	defer db.manifestMu.Unlock()
	return db.logAndApplyLocked(edit, also)
}

// logAndApplyLocked is logAndApply with db.manifestMu held.
func (db *DB) logAndApplyLocked(edit *manifest.VersionEdit, also func()) error {
	db.mu.Lock()
	if db.bgErr != nil {
		db.mu.Unlock()
		return db.bgErr
	}
	cur := db.current
	edit.NextFileNumber = db.nextFileNum
	edit.HasNextFileNumber = true
	db.mu.Unlock()

	if err := edit.Validate(); err != nil {
		return db.fail(fmt.Errorf("invalid version edit: %w", err))
	}
	nv, err := cur.applyEdit(edit)
	if err != nil {
		return db.fail(fmt.Errorf("apply version edit: %w", err))
	}
	rec := edit.Encode(nil)
	// On failure the edit may be in the manifest file without its fsync
	// having finished, so its tables must stay on disk: the next Open
	// decides (unlisted tables are removed there).
	if err := db.manifestWriter.WriteRecords(rec); err != nil {
		nv.unrefNoDelete()
		return db.fail(fmt.Errorf("write manifest: %w", err))
	}
	if err := db.manifestWriter.Sync(); err != nil {
		nv.unrefNoDelete()
		return db.fail(fmt.Errorf("sync manifest: %w", err))
	}
	db.mu.Lock()
	db.current = nv
	if also != nil {
		also()
	}
	db.updateReadStateLocked()
	db.mu.Unlock()
	cur.unref()
	return nil
}
