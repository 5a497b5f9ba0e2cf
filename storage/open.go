package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/manifest"
	"github.com/ringkv/ringkv/storage/memtable"
	"github.com/ringkv/ringkv/storage/sstable"
	"github.com/ringkv/ringkv/storage/wal"
)

// manifestMagic is the first record of every manifest: it names the format
// and its version so that a future format change is refused clearly.
const manifestMagic = "ringkv-manifest-v1"

// recover rebuilds the engine's state from its directory: the manifest's
// version, then every commit log not yet flushed, replayed into L0 tables.
// It ends by writing a fresh manifest and starting a fresh log, so that
// every open starts from a clean, fully synced state. It returns the
// quarantined tables the owner must be told about: those it quarantined
// and those whose move an earlier run left unfinished.
func (db *DB) recover() (notify []QuarantinedTable, err error) {
	env := &tableEnv{fs: db.fs, dirname: db.dirname, cache: db.cache, obsolete: db.deleteObsoleteTable}
	v := &version{env: env}
	v.refs.Store(1)
	db.current = v
	db.nextFileNum = 1

	names, err := db.fs.List(db.dirname)
	if err != nil {
		return nil, fmt.Errorf("list directory: %w", err)
	}
	hasCurrent := false
	var logs []uint64
	maxNum := uint64(0)
	for _, name := range names {
		if name == currentName {
			hasCurrent = true
		}
		if kind, num, ok := parseFileName(name); ok {
			maxNum = max(maxNum, num)
			if kind == "log" {
				logs = append(logs, num)
			}
		}
	}

	var flushedSeq base.SeqNum
	if hasCurrent {
		torn, err := db.replayManifest(&flushedSeq)
		if err != nil {
			return nil, err
		}
		// A torn last edit was never acknowledged, and logs are deleted only
		// after a later edit is durable, so the log the surviving edits name
		// must still be there. If it is not, the damaged record was a durable
		// edit (a flush whose log is gone): refuse rather than lose it.
		if torn && db.logNumber != 0 {
			if _, err := db.fs.Stat(db.path(logName(db.logNumber))); err != nil {
				return nil, base.CorruptionErrorf("manifest ends in a damaged record and commit log %s it needs is missing", logName(db.logNumber))
			}
		}
	} else {
		// Without CURRENT no manifest was ever installed, so a leftover
		// manifest is from a first Open that crashed; it is removed below.
		// Logs or tables without CURRENT mean CURRENT was lost.
		for _, name := range names {
			if kind, _, ok := parseFileName(name); ok && kind != "manifest" {
				return nil, base.CorruptionErrorf("directory holds engine file %s but no %s; refusing to start empty over it", name, currentName)
			}
		}
	}
	db.nextFileNum = max(db.nextFileNum, maxNum+1)
	db.lastSeq = flushedSeq
	quarantineAtOpen := !db.opts.DisableQuarantine && !db.opts.RefuseCorruptTablesAtOpen
	damaged := &manifest.VersionEdit{}
	var condemned []QuarantinedTable
	for level := range db.current.levels {
		for _, f := range db.current.levels[level] {
			db.lastSeq = max(db.lastSeq, f.meta.LargestSeq)
			damage, err := db.checkTable(f)
			if err != nil {
				return nil, err
			}
			if damage == nil {
				continue
			}
			if !quarantineAtOpen {
				return nil, damage
			}
			q := newQuarantined(f, level, damage)
			damaged.Deleted = append(damaged.Deleted, manifest.DeletedFile{Level: level, Num: f.meta.Num})
			condemned = append(condemned, q)
		}
	}
	if len(condemned) > 0 {
		// Out of the version now; the fresh manifest written below records
		// it, and the files move once that manifest is durable.
		nv, err := db.current.applyEdit(damaged)
		if err != nil {
			return nil, err
		}
		db.current.unrefNoDelete()
		db.current = nv
		for _, q := range condemned {
			db.quarantined[q.FileNum] = q
			db.m.quarantines.Add(1)
			db.opts.Logf("storage: quarantined table %s (L%d, keys %q..%q) at open: %s", tableName(q.FileNum), q.Level, q.Smallest, q.Largest, q.Reason)
		}
	}
	// Quarantined tables still in the engine directory are moves an earlier
	// run did not finish (or this Open's); records whose file is gone
	// altogether are forgotten.
	inDir := make(map[string]bool, len(names))
	for _, name := range names {
		inDir[name] = true
	}
	var toMove []uint64
	if len(db.quarantined) > 0 {
		kept, err := db.listQuarantineDir()
		if err != nil {
			return nil, err
		}
		if len(kept) > 0 {
			// A run that failed after a rename may have left a new name
			// there that is not durable: make it so before this Open syncs
			// the engine directory.
			if err := db.syncQuarantineDir(); err != nil {
				return nil, err
			}
		}
		for num := range db.quarantined {
			name := tableName(num)
			switch {
			case inDir[name]:
				toMove = append(toMove, num)
			case !kept[name]:
				db.opts.Logf("storage: quarantined table %s is no longer in %s; forgetting it", name, quarantineDir)
				delete(db.quarantined, num)
			}
		}
		sort.Slice(toMove, func(i, j int) bool { return toMove[i] < toMove[j] })
	}

	// Replay the logs not yet flushed, oldest first.
	sort.Slice(logs, func(i, j int) bool { return logs[i] < logs[j] })
	var live []uint64
	for _, n := range logs {
		if n >= db.logNumber {
			live = append(live, n)
		}
	}
	mem := db.newMemTable(db.opts.MemTableSize)
	var replayed int
	tornIn := -1
	for i, n := range live {
		count, torn, err := db.replayLog(n, flushedSeq, &mem)
		if err != nil {
			return nil, err
		}
		if tornIn >= 0 && count > 0 {
			return nil, base.CorruptionErrorf("commit log %s is torn but the later log %s holds writes", logName(live[tornIn]), logName(n))
		}
		if torn {
			tornIn = i
		}
		replayed += count
	}
	if !mem.Empty() {
		if err := db.flushRecovered(mem); err != nil {
			return nil, err
		}
	}
	db.recycleMemTable(mem) // the engine's first memtable reuses it

	// Write a fresh manifest holding the whole version, then start a fresh
	// log. The log is created only after CURRENT names the new manifest: a
	// crash in between leaves no log the manifest does not expect.
	logNum := db.nextFileNum
	db.nextFileNum++
	db.logNumber = logNum
	if err := db.writeNewManifest(); err != nil {
		return nil, err
	}
	logFile, err := db.fs.Create(db.path(logName(logNum)))
	if err == nil {
		err = db.syncDir()
	}
	if err != nil {
		return nil, fmt.Errorf("create commit log: %w", err)
	}
	for _, num := range toMove {
		if fatal, err := db.moveToQuarantine(num); fatal {
			return nil, fmt.Errorf("quarantine table %s: %w", tableName(num), err)
		} else if err != nil {
			// The record stays, so the file is kept; the next Open retries.
			db.opts.Logf("storage: move of quarantined table %s failed: %v", tableName(num), err)
		}
	}
	notify = append(notify, condemned...)
	for _, num := range toMove {
		if !slices.ContainsFunc(condemned, func(q QuarantinedTable) bool { return q.FileNum == num }) {
			// The run that quarantined it may have stopped before telling
			// its owner: tell again.
			notify = append(notify, db.quarantined[num])
		}
	}
	db.logFile = logFile
	db.log = wal.NewMappedWriter(logFile, db.opts.Sync != SyncBatch)
	db.lastSynced = time.Now()
	db.mem = db.newMemTableFor(logNum, 0)
	db.visibleSeq.Store(uint64(db.lastSeq))
	db.updateReadStateLocked()
	db.removeObsoleteFiles()
	if replayed > 0 {
		db.opts.Logf("storage: recovered %d writes from %d commit log(s)", replayed, len(live))
	}
	return notify, nil
}

// checkTable makes sure a table the manifest lists exists, has its size and
// ends in a valid footer. damage (wrapping ErrCorruption) reports a table
// that is there but wrong: the engine may quarantine it. err reports what
// Open must refuse: a missing table (nothing to quarantine, and more likely
// the wrong directory or a hand at work than a disk's damage), or an I/O
// error, which may pass.
func (db *DB) checkTable(f *tableFile) (damage, err error) {
	name := db.path(tableName(f.meta.Num))
	fi, err := db.fs.Stat(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, base.CorruptionErrorf("table %s listed in the manifest is missing", tableName(f.meta.Num))
		}
		return nil, fmt.Errorf("stat table %s: %w", tableName(f.meta.Num), err)
	}
	if uint64(fi.Size()) != f.meta.Size {
		return base.CorruptionErrorf("table %s is %d bytes, the manifest says %d", tableName(f.meta.Num), fi.Size(), f.meta.Size), nil
	}
	file, err := db.fs.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open table %s: %w", tableName(f.meta.Num), err)
	}
	_, err = sstable.ReadFooter(file, fi.Size(), f.meta.Num)
	file.Close()
	if errors.Is(err, ErrCorruption) {
		return fmt.Errorf("table %s: %w", tableName(f.meta.Num), err), nil
	}
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", tableName(f.meta.Num), err)
	}
	return nil, nil
}

// replayManifest reads CURRENT and applies every edit of the manifest it
// names. A torn last record is an edit that was never acknowledged (its
// fsync did not finish) and is ignored; damage before it is an error.
func (db *DB) replayManifest(flushedSeq *base.SeqNum) (torn bool, err error) {
	cur, err := readAll(db, currentName)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", currentName, err)
	}
	name := strings.TrimSuffix(string(cur), "\n")
	kind, num, ok := parseFileName(name)
	if !ok || kind != "manifest" || !strings.HasSuffix(string(cur), "\n") {
		return false, base.CorruptionErrorf("%s holds %q, not a manifest name", currentName, cur)
	}
	db.manifestNum = num
	f, err := db.fs.Open(db.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return false, base.CorruptionErrorf("%s names manifest %s, which is missing", currentName, name)
	}
	if err != nil {
		return false, fmt.Errorf("open manifest %s: %w", name, err)
	}
	defer f.Close()
	r := wal.NewReader(f)
	// The header and the first edit (the whole version, written with the
	// header in one synced write) must be whole: a manifest is installed
	// only after both are durable.
	records := 0
	for {
		rec, err := r.Next()
		if err == io.EOF || errors.Is(err, wal.ErrTornTail) {
			if records < 2 {
				return false, base.CorruptionErrorf("manifest %s is empty or damaged in its first records", name)
			}
			return err != io.EOF, nil
		}
		if err != nil {
			return false, fmt.Errorf("read manifest %s: %w", name, err)
		}
		records++
		if records == 1 {
			if string(rec) != manifestMagic {
				return false, base.CorruptionErrorf("manifest %s does not start with %q (unknown format or damaged)", name, manifestMagic)
			}
			continue
		}
		var edit manifest.VersionEdit
		if err := edit.Decode(rec); err != nil {
			return false, fmt.Errorf("manifest %s: %w", name, err)
		}
		nv, err := db.current.applyEdit(&edit)
		if err != nil {
			return false, fmt.Errorf("manifest %s: %w", name, err)
		}
		db.current.unrefNoDelete()
		db.current = nv
		if edit.HasLogNumber {
			db.logNumber = edit.LogNumber
		}
		if edit.HasNextFileNumber {
			db.nextFileNum = max(db.nextFileNum, edit.NextFileNumber)
		}
		if edit.HasLastSeq {
			*flushedSeq = max(*flushedSeq, edit.LastSeq)
		}
		for _, r := range edit.Quarantined {
			db.quarantined[r.Num] = quarantinedFromRecord(r)
		}
	}
}

// unrefNoDelete drops a version during recovery, where tables that leave
// it are not deleted (removeObsoleteFiles decides at the end).
func (v *version) unrefNoDelete() {
	if v.refs.Add(-1) == 0 {
		for level := range v.levels {
			for _, f := range v.levels[level] {
				f.refs.Add(-1)
			}
		}
	}
}

func readAll(db *DB, name string) ([]byte, error) {
	f, err := db.fs.Open(db.path(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// replayLog applies one commit log's batches with sequence numbers above
// flushedSeq to *mem, flushing *mem to L0 when it fills. It reports how many
// writes it applied and whether the log ended in a torn record.
func (db *DB) replayLog(num uint64, flushedSeq base.SeqNum, mem **memtable.MemTable) (count int, torn bool, err error) {
	name := logName(num)
	f, err := db.fs.Open(db.path(name))
	if err != nil {
		return 0, false, fmt.Errorf("open commit log %s: %w", name, err)
	}
	defer f.Close()
	r := wal.NewReader(f)
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return count, false, nil
		}
		if errors.Is(err, wal.ErrTornTail) {
			db.opts.Logf("storage: commit log %s has a torn tail after %d bytes; dropping it", name, r.Offset())
			return count, true, nil
		}
		if err != nil {
			return count, false, fmt.Errorf("commit log %s: %w", name, err)
		}
		br, err := newBatchReader(rec)
		if err != nil {
			return count, false, fmt.Errorf("commit log %s: %w", name, err)
		}
		seq := br.seq
		for {
			op, ok, err := br.next()
			if err != nil {
				return count, false, fmt.Errorf("commit log %s: %w", name, err)
			}
			if !ok {
				break
			}
			if seq > flushedSeq {
				err := (*mem).Add(seq, op.kind, op.key, op.value)
				if errors.Is(err, memtable.ErrArenaFull) || errors.Is(err, memtable.ErrEntryTooLarge) {
					if err := db.flushRecovered(*mem); err != nil {
						return count, false, err
					}
					db.recycleMemTable(*mem) // in the tables now, and no reader has it
					size := max(db.opts.MemTableSize, memtable.ArenaSizeFor(len(op.key), len(op.value)))
					*mem = db.newMemTable(size)
					err = (*mem).Add(seq, op.kind, op.key, op.value)
				}
				if err != nil {
					return count, false, fmt.Errorf("commit log %s: replay %q: %w", name, op.key, err)
				}
				count++
			}
			db.lastSeq = max(db.lastSeq, seq)
			seq++
		}
	}
}

// flushRecovered writes a memtable rebuilt from the logs to L0 and adds the
// tables to the in-memory version; the new manifest written at the end of
// recovery records them.
func (db *DB) flushRecovered(mem *memtable.MemTable) error {
	it := mem.NewIter()
	metas, err := db.writeTables(it, nil, nil)
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("flush recovered writes: %w", err)
	}
	edit := &manifest.VersionEdit{}
	for _, m := range metas {
		edit.Added = append(edit.Added, manifest.NewFile{Level: 0, Meta: m})
	}
	nv, err := db.current.applyEdit(edit)
	if err != nil {
		return err
	}
	db.current.unrefNoDelete()
	db.current = nv
	return nil
}

// writeNewManifest writes the whole current version to a new manifest,
// fsyncs it and points CURRENT at it (temporary name, fsync, rename,
// directory fsync).
func (db *DB) writeNewManifest() error {
	num := db.nextFileNum
	db.nextFileNum++
	name := manifestName(num)
	f, err := db.fs.Create(db.path(name))
	if err != nil {
		return fmt.Errorf("create manifest %s: %w", name, err)
	}
	w := wal.NewWriter(f)
	edit := db.current.snapshotEdit()
	for _, q := range db.Quarantined() {
		edit.Quarantined = append(edit.Quarantined, q.record())
	}
	edit.LogNumber, edit.HasLogNumber = db.logNumber, true
	edit.NextFileNumber, edit.HasNextFileNumber = db.nextFileNum, true
	edit.LastSeq, edit.HasLastSeq = db.lastSeq, true
	err = w.WriteRecords([]byte(manifestMagic), edit.Encode(nil))
	if err == nil {
		err = w.Sync()
	}
	if err != nil {
		w.Close()
		return fmt.Errorf("write manifest %s: %w", name, err)
	}
	if err := db.setCurrent(name); err != nil {
		w.Close()
		return err
	}
	db.manifestNum = num
	db.manifestFile = f
	db.manifestWriter = w
	return nil
}

func (db *DB) setCurrent(manifest string) error {
	tmp := db.path(currentName + tmpSuffix)
	f, err := db.fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, err = f.Write([]byte(manifest + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := db.fs.Rename(tmp, db.path(currentName)); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return db.syncDir()
}

// removeObsoleteFiles deletes what recovery left behind: old manifests,
// flushed logs, tables no version lists and temporary files.
func (db *DB) removeObsoleteFiles() {
	names, err := db.fs.List(db.dirname)
	if err != nil {
		return
	}
	live := make(map[uint64]bool)
	for level := range db.current.levels {
		for _, f := range db.current.levels[level] {
			live[f.meta.Num] = true
		}
	}
	for _, name := range names {
		remove := strings.HasSuffix(name, tmpSuffix)
		if kind, num, ok := parseFileName(name); ok {
			switch kind {
			case "manifest":
				remove = num != db.manifestNum
			case "log":
				remove = num < db.logNumber
			case "table":
				// A quarantined table here is one whose move failed: keep it.
				_, quarantined := db.quarantined[num]
				remove = !live[num] && !quarantined
			}
		}
		if remove {
			if err := db.fs.Remove(db.path(name)); err != nil {
				db.opts.Logf("storage: remove obsolete %s: %v", name, err)
			}
		}
	}
}

// deleteObsoleteTable runs when no version lists f any more.
func (db *DB) deleteObsoleteTable(f *tableFile) {
	f.close()
	db.cache.EvictFile(f.meta.Num)
	if db.keepFiles.Load() || f.quarantined.Load() {
		return
	}
	if err := db.fs.Remove(db.path(tableName(f.meta.Num))); err != nil {
		db.opts.Logf("storage: remove obsolete table %s: %v", tableName(f.meta.Num), err)
	}
}
