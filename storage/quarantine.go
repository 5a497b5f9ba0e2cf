package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/ringkv/ringkv/storage/manifest"
	"github.com/ringkv/ringkv/storage/sstable"
)

// Quarantine. A table whose block fails its checksum (or whose footer or
// index cannot be read, or whose size is not the manifest's) holds data the
// engine can no longer vouch for. Rather than fail every read and every
// compaction that meets it, the engine takes it out of service:
//
//  1. A version edit deletes the table from its level and records it as
//     quarantined (file number, level, user-key range, reason). It is
//     written and fsynced like any edit; once it is durable the table is
//     out of the version for good.
//  2. The file is renamed into the quarantine/ subdirectory, never deleted.
//     The new name is made durable first (sync of quarantine/), then the
//     old name's removal (sync of the engine directory): a crash in
//     between leaves the file under both names, never under neither.
//  3. OnQuarantine is called, outside the engine's locks.
//
// The read that met the damage still fails with ErrCorruption; later reads
// go on without the table, so they may see an older value of its keys (or
// none). That is acceptable only because the owner is told and repairs the
// range from the cluster's other replicas.
//
// Readers that hold a version listing the table (open iterators) keep
// reading it through the file handle they have: the rename does not close
// it (a reader that had not opened the table yet opens it in quarantine/),
// and the handle is released when the last such version is, without
// removing the file. A Snapshot holds no version, only a sequence number,
// so its reads after the quarantine go without the table, as others do.
//
// Open checks every listed table's size and footer (one small read per
// table; blocks and index are still read lazily) and quarantines those that
// fail, before it serves anything, unless Options.RefuseCorruptTablesAtOpen.
// A table missing altogether still makes Open refuse.
//
// The manifest keeps the records (every new manifest repeats them) as long
// as the file exists, in quarantine/ or, after a crash between steps 1 and
// 2, in the engine directory: Open then finishes the move instead of
// deleting the file as an unlisted table. A record whose file is gone
// (someone removed it from quarantine/) is dropped at the next Open.

// QuarantinedTable describes a table taken out of service as damaged. Its
// file is quarantine/NNNNNN.sst in the engine's directory.
type QuarantinedTable struct {
	// FileNum is the table's file number (the NNNNNN of its name).
	FileNum uint64
	// Level is the level it was on.
	Level int
	// Smallest and Largest are the smallest and largest user keys it held,
	// inclusive: the range whose data the engine may have lost.
	Smallest, Largest []byte
	// Reason is the error that condemned it.
	Reason string
}

// FileName is the table's path relative to the engine's directory.
func (q QuarantinedTable) FileName() string { return quarantineDir + "/" + tableName(q.FileNum) }

func (q QuarantinedTable) record() manifest.QuarantinedFile {
	return manifest.QuarantinedFile{Level: q.Level, Num: q.FileNum, Smallest: q.Smallest, Largest: q.Largest, Reason: q.Reason}
}

func quarantinedFromRecord(r manifest.QuarantinedFile) QuarantinedTable {
	return QuarantinedTable{FileNum: r.Num, Level: r.Level, Smallest: r.Smallest, Largest: r.Largest, Reason: r.Reason}
}

func newQuarantined(f *tableFile, level int, cause error) QuarantinedTable {
	reason := cause.Error()
	if len(reason) > manifest.MaxReasonLen {
		reason = reason[:manifest.MaxReasonLen]
	}
	return QuarantinedTable{
		FileNum: f.meta.Num, Level: level,
		Smallest: bytes.Clone(f.smallestUser()), Largest: bytes.Clone(f.largestUser()),
		Reason: reason,
	}
}

// Quarantined lists the tables kept in quarantine/, by file number: those
// quarantined since Open and those earlier runs left there.
func (db *DB) Quarantined() []QuarantinedTable {
	db.mu.Lock()
	out := make([]QuarantinedTable, 0, len(db.quarantined))
	for _, q := range db.quarantined {
		q.Smallest, q.Largest = bytes.Clone(q.Smallest), bytes.Clone(q.Largest)
		out = append(out, q)
	}
	db.mu.Unlock()
	slices.SortFunc(out, func(a, b QuarantinedTable) int { return cmpUint64(a.FileNum, b.FileNum) })
	return out
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// damagedTable returns the table a read error reports as damaged, if the
// engine quarantines such tables. It is called where an error surfaces,
// never on the path of a successful read.
func (db *DB) damagedTable(err error) (uint64, bool) {
	if db.opts.DisableQuarantine || !errors.Is(err, ErrCorruption) {
		return 0, false
	}
	return sstable.CorruptTable(err)
}

// noteReadError quarantines the table a failed read met, if it is damaged.
func (db *DB) noteReadError(err error) {
	if num, ok := db.damagedTable(err); ok {
		db.quarantine(num, err)
	}
}

// quarantine takes table num out of the current version and moves its file
// aside (see the comment at the top of this file). It does nothing if the
// table is no longer in the version (already quarantined, or compacted away
// since the reader took its version). A manifest error fails the engine, as
// for any edit; a failed move is logged and finished by the next Open (and
// fails the engine if the file may be left with no durable name, see
// moveToQuarantine).
func (db *DB) quarantine(num uint64, cause error) {
	db.manifestMu.Lock()
	db.mu.Lock()
	if db.closing || db.bgErr != nil || db.current == nil {
		db.mu.Unlock()
		db.manifestMu.Unlock()
		return
	}
	f, level := db.current.find(num)
	db.mu.Unlock()
	if f == nil {
		db.manifestMu.Unlock()
		return
	}
	q := newQuarantined(f, level, cause)
	edit := &manifest.VersionEdit{
		Deleted:     []manifest.DeletedFile{{Level: level, Num: num}},
		Quarantined: []manifest.QuarantinedFile{q.record()},
	}
	err := db.logAndApplyLocked(edit, func() {
		// Set before the old version is released, which would delete an
		// unflagged table.
		f.quarantined.Store(true)
		db.quarantined[num] = q
	})
	var moveErr error
	if err == nil {
		var fatal bool
		if fatal, moveErr = db.moveToQuarantine(num); fatal {
			db.fail(fmt.Errorf("quarantine table %s: %w", tableName(num), moveErr))
		}
	}
	db.manifestMu.Unlock()
	if err != nil {
		db.opts.Logf("storage: quarantine of table %s failed: %v", tableName(num), err)
		return
	}
	db.m.quarantines.Add(1)
	db.opts.Logf("storage: quarantined table %s (L%d, keys %q..%q): %v", tableName(num), level, q.Smallest, q.Largest, cause)
	if moveErr != nil {
		db.opts.Logf("storage: move of quarantined table %s failed (the next Open finishes it): %v", tableName(num), moveErr)
	}
	db.notifyQuarantined(q)
}

func (db *DB) notifyQuarantined(q QuarantinedTable) {
	if cb := db.opts.OnQuarantine; cb != nil {
		q.Smallest, q.Largest = bytes.Clone(q.Smallest), bytes.Clone(q.Largest)
		cb(q)
	}
}

// moveToQuarantine renames table num into quarantine/ durably: the new name
// first, then the removal of the old one. If an earlier move was cut short
// after its new name became durable, the file is there already and only the
// old name is removed. db.manifestMu (or recovery) serializes callers.
//
// An error with fatal set came after the rename but before its new name was
// durable: the engine must not sync its own directory again (a flush would),
// which could make the old name's removal durable first and lose the file
// in a crash. The caller fails the engine (or Open).
func (db *DB) moveToQuarantine(num uint64) (fatal bool, err error) {
	if err := db.renameToQuarantine(num); err != nil {
		return false, err
	}
	if err := db.syncQuarantineDir(); err != nil {
		return true, err
	}
	return false, db.syncDir()
}

func (db *DB) renameToQuarantine(num uint64) error {
	dir := db.path(quarantineDir)
	if !db.quarantineDirReady {
		if err := db.fs.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		// The directory's own entry must be durable before anything in it
		// can be.
		if err := db.syncDir(); err != nil {
			return err
		}
		db.quarantineDirReady = true
	}
	from, to := db.path(tableName(num)), db.fs.PathJoin(dir, tableName(num))
	if _, err := db.fs.Stat(to); err == nil {
		if err := db.fs.Remove(from); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s (already in %s): %w", from, dir, err)
		}
	} else if err := db.fs.Rename(from, to); err != nil {
		return fmt.Errorf("move %s to %s: %w", from, dir, err)
	}
	return nil
}

func (db *DB) syncQuarantineDir() error {
	dir := db.path(quarantineDir)
	d, err := db.fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// listQuarantineDir returns the names in quarantine/ (none if it does not
// exist).
func (db *DB) listQuarantineDir() (map[string]bool, error) {
	names, err := db.fs.List(db.path(quarantineDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", quarantineDir, err)
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}
