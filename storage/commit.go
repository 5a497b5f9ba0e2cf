package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/memtable"
	"github.com/ringkv/ringkv/storage/wal"
)

// maxGroupBytes bounds how much one commit group writes to the log at once.
const maxGroupBytes = 4 << 20

// pendingWrite is one caller's batch waiting in the commit queue.
type pendingWrite struct {
	batch *Batch
	sync  bool
	// rotate asks the leader to rotate the memtable (Flush) instead of
	// writing.
	rotate bool
	err    error
	done   bool
	// wake is signalled when the write is done or its writer must lead.
	wake chan struct{}
}

// Apply commits the batch atomically. With SyncBatch (or wo.Sync) it returns
// after the commit log holding the batch is fsynced. The batch may be reused
// after Apply returns.
func (db *DB) Apply(b *Batch, wo *WriteOptions) error {
	if b.err != nil {
		return b.err
	}
	if b.count == 0 {
		return nil
	}
	w := &pendingWrite{batch: b, sync: db.opts.Sync == SyncBatch || (wo != nil && wo.Sync)}
	return db.enqueue(w)
}

// Stage is Apply in two steps. Stage puts the batch in the commit queue and
// returns at once: its place in the commit order is fixed, after every
// write staged or applied before it returned and before every later one.
// The returned commit function waits until the batch is committed, exactly
// as Apply would, and returns Apply's error. It must be called exactly once,
// and soon: writes queued behind an uncommitted stage wait for it. The
// batch must not be modified until commit returns.
//
// It lets a caller that serialises writes to a key (under a lock) release
// the lock once the write is ordered instead of once it is durable, and
// hand the next writer of the key the state it staged. Every error after a
// successful Stage is sticky (the engine refuses every later write too), so
// a write built on a staged state that fails to commit fails as well.
func (db *DB) Stage(b *Batch, wo *WriteOptions) (commit func() error) {
	if b.err != nil {
		err := b.err
		return func() error { return err }
	}
	if b.count == 0 {
		return func() error { return nil }
	}
	w := &pendingWrite{batch: b, sync: db.opts.Sync == SyncBatch || (wo != nil && wo.Sync)}
	leader := db.push(w)
	return func() error { return db.await(w, leader) }
}

// enqueue puts w in the commit queue. The writer at the head of the queue
// becomes the leader: it takes every write queued behind it (up to
// maxGroupBytes), writes them to the log in one write, fsyncs once if any of
// them asked for it, applies them to the memtable and wakes their writers,
// each through its own channel, then wakes the next leader. (A shared
// condition variable would wake every waiter on every group: quadratic in
// the queue length.)
func (db *DB) enqueue(w *pendingWrite) error {
	return db.await(w, db.push(w))
}

// push appends w to the commit queue and reports whether it is the leader
// (the queue was empty).
func (db *DB) push(w *pendingWrite) bool {
	db.qmu.Lock()
	leader := len(db.queue) == 0
	if !leader {
		// Only a writer that waits needs a channel: a lone writer (the
		// common single-threaded case) allocates none. Buffered, so that a
		// wake-up sent before the writer waits (see Stage) is not lost.
		w.wake = make(chan struct{}, 1)
	}
	db.queue = append(db.queue, w)
	db.qmu.Unlock()
	return leader
}

// await waits until w is committed, leading a commit group when its turn
// comes (or at once if leader).
func (db *DB) await(w *pendingWrite, leader bool) error {
	if !leader {
		<-w.wake
		if w.done {
			return w.err
		}
	}

	db.qmu.Lock()
	n, size := 1, len(w.batch.dataOrEmpty())
	if !w.rotate {
		for n < len(db.queue) && !db.queue[n].rotate {
			size += len(db.queue[n].batch.data)
			if size > maxGroupBytes {
				break
			}
			n++
		}
	}
	group := make([]*pendingWrite, n)
	copy(group, db.queue[:n])
	db.qmu.Unlock()

	var err error
	if w.rotate {
		err = db.rotateForFlush()
	} else {
		err = db.commitGroup(group)
	}

	db.qmu.Lock()
	for _, g := range group {
		g.err = err
		g.done = true
	}
	rest := copy(db.queue, db.queue[n:])
	clear(db.queue[rest:])
	db.queue = db.queue[:rest]
	var next *pendingWrite
	if rest > 0 {
		next = db.queue[0]
	}
	db.qmu.Unlock()
	for _, g := range group[1:] {
		g.wake <- struct{}{}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
	return err
}

func (b *Batch) dataOrEmpty() []byte {
	if b == nil {
		return nil
	}
	return b.data
}

// commitGroup runs on the leader only.
func (db *DB) commitGroup(group []*pendingWrite) error {
	var bytes int
	var count uint64
	needSync := false
	for _, g := range group {
		bytes += len(g.batch.data)
		count += uint64(g.batch.count)
		needSync = needSync || g.sync
	}
	if err := db.makeRoomForWrite(bytes); err != nil {
		return err
	}

	seq := db.lastSeq + 1
	recs := make([][]byte, len(group))
	for i, g := range group {
		g.batch.setSeq(seq)
		seq += base.SeqNum(g.batch.count)
		recs[i] = g.batch.data
	}

	db.logMu.Lock()
	err := db.log.WriteRecords(recs...)
	if err == nil && (needSync || db.opts.Sync == SyncPeriodic && time.Since(db.lastSynced) > db.opts.SyncInterval) {
		start := time.Now()
		err = db.log.Sync()
		db.lastSynced = start
		db.m.recordSync(time.Since(start))
	}
	db.logMu.Unlock()
	if err != nil {
		return db.fail(fmt.Errorf("write commit log: %w", err))
	}
	db.m.walBytes.Add(uint64(bytes + 8*len(recs)))

	for _, g := range group {
		if err := db.applyToMemtable(g.batch); err != nil {
			return db.fail(err)
		}
	}
	db.lastSeq = seq - 1
	db.visibleSeq.Store(uint64(db.lastSeq))
	db.m.userBytes.Add(uint64(bytes))
	db.m.writes.Add(count)
	return nil
}

// applyToMemtable inserts a committed batch. If the memtable's arena runs
// out mid-batch the memtable is rotated without rotating the log: the new
// memtable shares the log, which stays until both are flushed.
func (db *DB) applyToMemtable(b *Batch) error {
	r, err := newBatchReader(b.data)
	if err != nil {
		return err
	}
	seq := r.seq
	mem := db.mem
	for {
		op, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		err = mem.mt.Add(seq, op.kind, op.key, op.value)
		if errors.Is(err, memtable.ErrArenaFull) || errors.Is(err, memtable.ErrEntryTooLarge) {
			mem = db.switchMemtable(mem.logNum, memtable.ArenaSizeFor(len(op.key), len(op.value)))
			err = mem.mt.Add(seq, op.kind, op.key, op.value)
		}
		if err != nil {
			return fmt.Errorf("memtable add %q: %w", op.key, err)
		}
		mem.maxSeq = seq
		seq++
	}
	return nil
}

// switchMemtable makes the current memtable immutable and starts a new one
// whose writes go to log logNum. It returns the new memtable.
func (db *DB) switchMemtable(logNum uint64, minSize int) *memTable {
	m := db.newMemTableFor(logNum, minSize)
	db.mu.Lock()
	old := db.mem
	if !old.mt.Empty() {
		db.imm = append(db.imm, old)
		db.flushReq = true
		old = nil
	}
	db.mem = m
	db.updateReadStateLocked()
	db.cond.Broadcast()
	db.mu.Unlock()
	if old != nil {
		old.unref() // the engine's reference: an empty memtable is not flushed
	}
	return m
}

// makeRoomForWrite makes sure the memtable can take another bytes of writes,
// rotating it (with a new commit log) when it is full, and slows or stops
// the writer while flushes or L0 compactions are behind. Runs on the leader.
func (db *DB) makeRoomForWrite(bytes int) error {
	slowed := false
	db.mu.Lock()
	defer db.mu.Unlock()
	for {
		if db.bgErr != nil {
			return db.bgErr
		}
		if db.closing {
			return ErrClosed
		}
		l0 := db.current.l0Depth
		if !slowed && l0 >= db.opts.L0SlowdownTrigger {
			// Delay this write a little so that compaction gets some CPU:
			// a short delay for many writes beats a long stop for one.
			slowed = true
			db.mu.Unlock()
			start := time.Now()
			time.Sleep(time.Millisecond)
			db.m.recordStall(time.Since(start))
			db.mu.Lock()
			continue
		}
		if db.mem.mt.ApproximateSize()+bytes*2 <= db.opts.MemTableSize || db.mem.mt.Empty() {
			return nil
		}
		if len(db.imm) >= db.opts.MaxImmutableMemTables {
			db.waitStalled(func() bool { return len(db.imm) >= db.opts.MaxImmutableMemTables })
			continue
		}
		if db.l0StoppedLocked() {
			db.waitStalled(db.l0StoppedLocked)
			continue
		}
		if err := db.rotateLocked(bytes); err != nil {
			return err
		}
		return nil
	}
}

// l0StoppedLocked reports whether L0 is deep enough, or holds enough
// tables, that writers must wait for a compaction (see
// Options.L0StopTrigger). db.mu is held.
func (db *DB) l0StoppedLocked() bool {
	v := db.current
	return v.l0Depth >= db.opts.L0StopTrigger ||
		v.numFiles(0) >= db.opts.L0CompactionFileTrigger*db.opts.L0StopTrigger/db.opts.L0CompactionTrigger
}

// waitStalled waits (db.mu held) while stalled() holds and the engine is
// healthy, and counts the stall.
func (db *DB) waitStalled(stalled func() bool) {
	start := time.Now()
	db.m.stalls.Add(1)
	for stalled() && db.bgErr == nil && !db.closing {
		db.cond.Wait()
	}
	db.m.stallNanos.Add(uint64(time.Since(start)))
}

// rotateLocked starts a new commit log and memtable and queues the old
// memtable for flushing. db.mu is held; it is released around file I/O,
// which is safe because only the commit leader rotates.
func (db *DB) rotateLocked(entryBytes int) error {
	num := db.nextFileNum
	db.nextFileNum++
	db.mu.Unlock()
	mem := db.newMemTableFor(num, memtable.ArenaSizeFor(entryBytes, 0))
	f, err := db.fs.Create(db.path(logName(num)))
	if err == nil {
		err = db.syncDir()
	}
	var oldErr error
	db.logMu.Lock()
	if err == nil && db.log != nil {
		// The old log must be durable, and end exactly after its last
		// record (Finish cuts a mapped log's preallocated zeros), before
		// writes in the new one are acknowledged, or a crash could keep
		// later writes and lose earlier ones.
		oldErr = db.log.Finish()
		if oldErr == nil {
			oldErr = db.log.Close()
		}
	}
	if err == nil && oldErr == nil {
		db.logFile = f
		db.log = wal.NewMappedWriter(f, db.opts.Sync != SyncBatch)
		db.lastSynced = time.Now()
	}
	db.logMu.Unlock()
	db.mu.Lock()
	if err != nil {
		if f != nil {
			f.Close()
		}
		mem.unref() // never used: back to the spare
		return db.failLocked(fmt.Errorf("create commit log %s: %w", logName(num), err))
	}
	if oldErr != nil {
		mem.unref()
		f.Close() // the new log was never used
		return db.failLocked(fmt.Errorf("close commit log: %w", oldErr))
	}
	old := db.mem
	if !old.mt.Empty() {
		db.imm = append(db.imm, old)
		db.flushReq = true
		old = nil
	}
	db.mem = mem
	db.updateReadStateLocked()
	db.cond.Broadcast()
	if old != nil {
		old.unref() // the engine's reference: an empty memtable is not flushed
	}
	return nil
}

// rotateForFlush runs on the leader for Flush: it rotates a non-empty
// memtable.
func (db *DB) rotateForFlush() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.bgErr != nil {
		return db.bgErr
	}
	if db.closing {
		return ErrClosed
	}
	if db.mem.mt.Empty() {
		return nil
	}
	for len(db.imm) >= db.opts.MaxImmutableMemTables && db.bgErr == nil && !db.closing {
		db.cond.Wait()
	}
	if db.bgErr != nil {
		return db.bgErr
	}
	return db.rotateLocked(0)
}

// Flush writes the memtable to a table and waits until every memtable
// written before the call is in a table.
func (db *DB) Flush() error {
	if err := db.enqueue(&pendingWrite{rotate: true}); err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	for len(db.imm) > 0 && db.bgErr == nil && !db.closing {
		db.cond.Wait()
	}
	if db.bgErr != nil {
		return db.bgErr
	}
	if db.closing && len(db.imm) > 0 {
		return ErrClosed
	}
	return nil
}

// periodicSyncLoop fsyncs the log every SyncInterval under SyncPeriodic.
func (db *DB) periodicSyncLoop() {
	defer db.bg.Done()
	t := time.NewTicker(db.opts.SyncInterval)
	defer t.Stop()
	for range t.C {
		db.mu.Lock()
		closing := db.closing
		db.mu.Unlock()
		if closing {
			return
		}
		db.logMu.Lock()
		var err error
		if db.log != nil && time.Since(db.lastSynced) >= db.opts.SyncInterval {
			start := time.Now()
			db.lastSynced = start
			err = db.log.Sync()
			db.m.recordSync(time.Since(start))
		}
		db.logMu.Unlock()
		if err != nil {
			db.fail(fmt.Errorf("periodic sync of commit log: %w", err))
			return
		}
	}
}
