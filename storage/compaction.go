package storage

import (
	"bytes"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/manifest"
)

// compaction is one unit of background work: merge the inputs of level and
// level+1 into new tables at level+1.
type compaction struct {
	level  int
	inputs [2][]*tableFile
	v      *version // the version the inputs were picked from (referenced)
	// smallest and largest user keys of all inputs.
	smallest, largest []byte
}

// maxBytesForLevel is the target size of level >= 1.
func (db *DB) maxBytesForLevel(level int) float64 {
	n := float64(db.opts.LBaseMaxBytes)
	for l := 1; l < level; l++ {
		n *= float64(db.opts.LevelMultiplier)
	}
	return n
}

// pickLevelLocked returns the level most in need of compaction, or -1.
// L0's score is its depth over its trigger (or its table count over the
// file trigger, if higher); deeper levels' scores are their size over their
// target.
func (db *DB) pickLevelLocked() int {
	v := db.current
	best, bestScore := -1, 1.0
	if s := max(float64(v.l0Depth)/float64(db.opts.L0CompactionTrigger),
		float64(v.numFiles(0))/float64(db.opts.L0CompactionFileTrigger)); s >= bestScore {
		best, bestScore = 0, s
	}
	for level := 1; level < NumLevels-1; level++ {
		if s := float64(v.levelBytes(level)) / db.maxBytesForLevel(level); s > bestScore {
			best, bestScore = level, s
		}
	}
	return best
}

func (db *DB) maybeScheduleCompactionLocked() {
	if db.pickLevelLocked() >= 0 {
		db.cond.Broadcast()
	}
}

// compactionLoop runs one compaction at a time while any level needs one.
func (db *DB) compactionLoop() {
	defer db.bg.Done()
	db.mu.Lock()
	defer db.mu.Unlock()
	for {
		for !db.closing && (db.bgErr != nil || db.compacting || db.pickLevelLocked() < 0) {
			db.cond.Wait()
		}
		if db.closing {
			return
		}
		c := db.pickCompactionLocked()
		if c == nil {
			db.cond.Wait()
			continue
		}
		db.compacting = true
		db.mu.Unlock()
		err := db.runCompaction(c)
		c.v.unref()
		db.mu.Lock()
		db.compacting = false
		if err != nil {
			db.failLocked(fmt.Errorf("compaction of level %d: %w", c.level, err))
		}
		db.cond.Broadcast()
	}
}

// pickCompactionLocked chooses the inputs. For L0 it takes every L0 table
// (they overlap each other); for deeper levels one table, round-robin by key
// so that every part of the level is rewritten in turn. Then it adds the
// overlapping tables of the next level.
func (db *DB) pickCompactionLocked() *compaction {
	level := db.pickLevelLocked()
	if level < 0 {
		return nil
	}
	v := db.current
	c := &compaction{level: level, v: v}
	if level == 0 {
		c.inputs[0] = append(c.inputs[0], v.levels[0]...)
	} else {
		files := v.levels[level]
		i := 0
		if ptr := db.compactPtr[level]; ptr != nil {
			i = findFile(files, ptr)
			for i < len(files) && bytes.Compare(files[i].largestUser(), ptr) <= 0 {
				i++
			}
			if i == len(files) {
				i = 0
			}
		}
		c.inputs[0] = []*tableFile{files[i]}
	}
	c.smallest, c.largest = keyRange(c.inputs[0])
	c.inputs[1] = v.overlaps(level+1, c.smallest, c.largest)
	if len(c.inputs[1]) > 0 {
		s, l := keyRange(c.inputs[1])
		if bytes.Compare(s, c.smallest) < 0 {
			c.smallest = s
		}
		if bytes.Compare(l, c.largest) > 0 {
			c.largest = l
		}
	}
	if level > 0 {
		db.compactPtr[level] = bytes.Clone(c.largest)
	}
	v.ref()
	return c
}

func keyRange(files []*tableFile) (smallest, largest []byte) {
	for _, f := range files {
		if smallest == nil || bytes.Compare(f.smallestUser(), smallest) < 0 {
			smallest = f.smallestUser()
		}
		if largest == nil || bytes.Compare(f.largestUser(), largest) > 0 {
			largest = f.largestUser()
		}
	}
	return smallest, largest
}

// smallestSnapshotSeq is the oldest sequence number a reader may still ask
// for: versions hidden from every reader at or above it can be dropped.
func (db *DB) smallestSnapshotSeq() base.SeqNum {
	db.mu.Lock()
	defer db.mu.Unlock()
	s := base.SeqNum(db.visibleSeq.Load())
	for snap := range db.snapshots {
		if snap.seq < s {
			s = snap.seq
		}
	}
	return s
}

// runCompaction merges c's inputs into new tables of level+1 and installs
// the result. A single input table with nothing to merge below is moved
// instead of rewritten.
func (db *DB) runCompaction(c *compaction) error {
	start := time.Now()
	out := c.level + 1
	edit := &manifest.VersionEdit{}
	for i, files := range c.inputs {
		for _, f := range files {
			edit.Deleted = append(edit.Deleted, manifest.DeletedFile{Level: c.level + i, Num: f.meta.Num})
		}
	}
	if c.level > 0 && len(c.inputs[0]) == 1 && len(c.inputs[1]) == 0 {
		f := c.inputs[0][0]
		edit.Added = append(edit.Added, manifest.NewFile{Level: out, Meta: f.meta})
		if err := db.logAndApply(edit, nil); err != nil {
			return err
		}
		db.m.moves.Add(1)
		return nil
	}

	var iters []base.InternalIterator
	var readBytes uint64
	for i, files := range c.inputs {
		if c.level+i == 0 {
			for _, f := range files {
				iters = append(iters, newCompactionTableIter(f))
				readBytes += f.meta.Size
			}
		} else if len(files) > 0 {
			li := newLevelIter(files)
			li.open = newCompactionTableIter
			iters = append(iters, li)
			for _, f := range files {
				readBytes += f.meta.Size
			}
		}
	}
	it := newMergingIter(iters)
	smallestSnap := db.smallestSnapshotSeq()

	// Drop rule (as in LevelDB): within one user key, newest first, an entry
	// is dropped if a newer entry of the same key is already visible to
	// every reader; a tombstone is dropped if it is visible to every reader
	// and no deeper level can hold an older value of its key that it must
	// keep hiding.
	var curKey []byte
	lastSeqForKey := base.SeqNumMax
	keep := func(ikey []byte) bool {
		ukey := base.UserKey(ikey)
		if curKey == nil || !bytes.Equal(ukey, curKey) {
			curKey = append(curKey[:0], ukey...)
			lastSeqForKey = base.SeqNumMax
		}
		seq := base.Seq(ikey)
		drop := false
		if lastSeqForKey <= smallestSnap {
			drop = true
		} else if base.KindOf(ikey) == base.KindDelete && seq <= smallestSnap && db.isBaseLevelForKey(c.v, out, ukey) {
			drop = true
		}
		lastSeqForKey = seq
		return !drop
	}
	metas, err := db.writeTables(it, keep, db.newPacer())
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if num, ok := db.damagedTable(err); ok {
		// Nothing was installed and writeTables removed its output: abort,
		// take the damaged input out of service and let the next
		// compaction merge the rest. The engine stays up.
		db.opts.Logf("storage: compaction L%d->L%d aborted: %v", c.level, out, err)
		db.quarantine(num, err)
		return nil
	}
	if err != nil {
		return err
	}
	var written uint64
	for _, m := range metas {
		edit.Added = append(edit.Added, manifest.NewFile{Level: out, Meta: m})
		written += m.Size
	}
	if err := db.logAndApply(edit, nil); err != nil {
		return err
	}
	db.m.compactions.Add(1)
	db.m.compactReadBytes.Add(readBytes)
	db.m.compactWriteBytes.Add(written)
	db.opts.Logf("storage: compacted %d+%d tables L%d->L%d into %d tables (%d -> %d bytes) in %s",
		len(c.inputs[0]), len(c.inputs[1]), c.level, out, len(metas), readBytes, written, time.Since(start))
	return nil
}

// isBaseLevelForKey reports whether no level below out can hold ukey.
func (db *DB) isBaseLevelForKey(v *version, out int, ukey []byte) bool {
	for level := out + 1; level < NumLevels; level++ {
		files := v.levels[level]
		i := findFile(files, ukey)
		if i < len(files) && bytes.Compare(ukey, files[i].smallestUser()) >= 0 {
			return false
		}
	}
	return true
}

// Compact compacts every level down until no level is over its target and
// L0 is empty; mostly for tests and tools.
func (db *DB) Compact() error {
	if err := db.Flush(); err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	for db.bgErr == nil && !db.closing && (db.pickLevelLocked() >= 0 || db.compacting || db.current.numFiles(0) > 0) {
		if db.pickLevelLocked() < 0 && !db.compacting && db.current.numFiles(0) > 0 {
			// Force L0 down even below its trigger.
			db.mu.Unlock()
			err := db.compactL0()
			db.mu.Lock()
			if err != nil {
				return err
			}
			continue
		}
		db.cond.Wait()
	}
	return db.bgErr
}

// compactL0 runs an L0 compaction now, whatever the L0 count, unless the
// background loop is busy.
func (db *DB) compactL0() error {
	db.mu.Lock()
	if db.compacting || db.current.numFiles(0) == 0 {
		db.mu.Unlock()
		return nil
	}
	db.compacting = true
	v := db.current
	c := &compaction{level: 0, v: v}
	c.inputs[0] = append(c.inputs[0], v.levels[0]...)
	c.smallest, c.largest = keyRange(c.inputs[0])
	c.inputs[1] = v.overlaps(1, c.smallest, c.largest)
	v.ref()
	db.mu.Unlock()
	err := db.runCompaction(c)
	v.unref()
	db.mu.Lock()
	db.compacting = false
	if err != nil {
		err = db.failLocked(fmt.Errorf("compaction of level 0: %w", err))
	}
	db.cond.Broadcast()
	db.mu.Unlock()
	return err
}
