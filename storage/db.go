// Package storage is ringkv's per-node storage engine: a log-structured
// merge tree with a checksummed commit log (group commit), an arena skiplist
// memtable, immutable SSTables with bloom filters, a shared block cache, a
// manifest changed atomically, and leveled compaction in the background,
// paced so that it does not take a whole processor from the requests while
// it is not behind (pace.go). It knows nothing of clusters: keys and values are opaque bytes.
//
// A table that fails a check (a block's checksum, its footer or index, its
// size) is quarantined, unless Options.DisableQuarantine: the read, scan or
// compaction that met the damage fails with ErrCorruption, a version edit
// takes the table out, its file moves to quarantine/ (never deleted), and
// Options.OnQuarantine is told its key range, which later reads answer from
// older tables; the owner repairs the range from the cluster's replicas.
// Open quarantines a table whose size or footer is wrong the same way
// unless Options.RefuseCorruptTablesAtOpen. DB.Quarantined lists the tables
// kept aside. See quarantine.go for the crash-safety argument.
//
// The engine's files live in one directory:
//
//	CURRENT           names the live manifest
//	MANIFEST-NNNNNN   a log of version edits: which tables make up each level
//	NNNNNN.log        commit logs, one per memtable
//	NNNNNN.sst        tables
//	LOCK              keeps a second engine out of the directory
//	quarantine/       damaged tables taken out of service (NNNNNN.sst)
package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/cache"
	"github.com/ringkv/ringkv/storage/memtable"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/storage/wal"
)

// Errors returned by the engine. Test them with errors.Is.
var (
	// ErrNotFound: the key has no value.
	ErrNotFound = errors.New("ringkv/storage: not found")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("ringkv/storage: closed")
	// ErrFailed: a write or fsync of the commit log, a table or the manifest
	// failed. The engine acknowledges no further write; reopen it to recover
	// from what is durable.
	ErrFailed = errors.New("ringkv/storage: engine failed, no further writes are accepted; reopen it")
	// ErrKeyTooLarge: a key is longer than MaxKeySize.
	ErrKeyTooLarge = errors.New("ringkv/storage: key too large")
	// ErrValueTooLarge: a value is longer than MaxValueSize.
	ErrValueTooLarge = errors.New("ringkv/storage: value too large")
	// ErrEmptyKey: keys must not be empty.
	ErrEmptyKey = errors.New("ringkv/storage: empty key")
	// ErrCorruption is wrapped by every error that reports damaged files.
	ErrCorruption = base.ErrCorruption
)

// WriteOptions change how one write is committed.
type WriteOptions struct {
	// Sync forces an fsync of the commit log before the write is
	// acknowledged, whatever the engine's sync mode.
	Sync bool
}

// memTable is a memtable and the commit log that holds its writes.
type memTable struct {
	mt     *memtable.MemTable
	logNum uint64
	// maxSeq is the largest sequence number added (written by the commit
	// leader only, read after the memtable became immutable).
	maxSeq base.SeqNum
	// refs counts the memtable's users: one while it is the engine's (the
	// active memtable or one waiting for its flush), one per read state
	// that lists it. When the last goes, nothing can reach the arena any
	// longer (reads copy what they take from a memtable before they let go
	// of their read state, and iterators copy every entry), so the arena
	// is kept for the next memtable (DB.recycleMemTable).
	refs atomic.Int32
	db   *DB
}

// newMemTableFor returns the engine's new memtable of log logNum, of arena
// size size (at least MemTableSize), holding the engine's reference.
func (db *DB) newMemTableFor(logNum uint64, size int) *memTable {
	m := &memTable{mt: db.newMemTable(max(db.opts.MemTableSize, size)), logNum: logNum, db: db}
	m.refs.Store(1)
	return m
}

func (m *memTable) ref() { m.refs.Add(1) }

func (m *memTable) unref() {
	switch n := m.refs.Add(-1); {
	case n == 0:
		m.db.recycleMemTable(m.mt)
	case n < 0:
		panic(fmt.Sprintf("storage: memtable of log %d released once too often", m.logNum))
	}
}

// readState is what a read needs: the memtables and the table version, taken
// together so that a flush never hides data from a reader.
type readState struct {
	mem  *memTable
	imm  []*memTable // newest first
	v    *version
	refs atomic.Int32
}

func (rs *readState) unref() {
	if rs.refs.Add(-1) == 0 {
		rs.v.unref()
		rs.mem.unref()
		for _, m := range rs.imm {
			m.unref()
		}
	}
}

// DB is an open engine. All methods are safe for concurrent use.
type DB struct {
	dirname string
	opts    *Options
	fs      vfs.FS
	dirLock io.Closer
	cache   *cache.Cache

	// visibleSeq is the sequence number of the last write whose whole group
	// is in the memtable; reads see writes up to it.
	visibleSeq atomic.Uint64

	// The commit queue: the writer at its head is the leader and commits
	// every queued batch in one log write and one fsync.
	qmu   sync.Mutex
	queue []*pendingWrite

	// spareMem is a memtable of the normal size that nothing references any
	// longer, kept for the next rotation (recycleMemTable); nil when none.
	// spareClosed: Close ran, so no spare is kept any more (a memtable
	// whose last reader leaves later is released, not kept).
	spareMu     sync.Mutex
	spareMem    *memtable.MemTable
	spareClosed bool

	// logMu guards the commit log writer (the leader writes, the periodic
	// syncer syncs, rotation swaps it).
	logMu      sync.Mutex
	logFile    vfs.File
	log        *wal.Writer
	lastSynced time.Time

	// lastSeq is the last sequence number assigned; only the leader touches it.
	lastSeq base.SeqNum

	// manifestMu serializes version edits (flushes and compactions).
	manifestMu     sync.Mutex
	manifestNum    uint64
	manifestFile   vfs.File
	manifestWriter *wal.Writer

	rsMu sync.RWMutex
	rs   *readState

	mu          sync.Mutex
	cond        *sync.Cond // broadcast when a flush or compaction ends, or on failure
	mem         *memTable
	imm         []*memTable // oldest first
	current     *version
	nextFileNum uint64
	logNumber   uint64 // logs below this number are flushed and deleted
	snapshots   map[*Snapshot]struct{}
	bgErr       error
	closing     bool
	flushing    bool
	compacting  bool
	compactPtr  [NumLevels][]byte
	flushReq    bool
	// quarantined holds the records of the tables kept in quarantine/.
	quarantined map[uint64]QuarantinedTable
	// quarantineDirReady: quarantine/ exists and its entry is durable
	// (guarded by manifestMu).
	quarantineDirReady bool

	bg sync.WaitGroup
	// keepFiles stops obsolete-table deletion once Close starts: versions
	// released then still list live tables.
	keepFiles atomic.Bool

	m metricsCounters
}

// Open opens (creating if needed) the engine in dirname. It replays the
// commit logs of writes that were not yet in tables, writes them to a table
// and starts a fresh log.
func Open(dirname string, opts *Options) (*DB, error) {
	o := opts.EnsureDefaults()
	db := &DB{
		dirname:     dirname,
		opts:        o,
		fs:          o.FS,
		cache:       cache.New(o.BlockCacheSize),
		snapshots:   make(map[*Snapshot]struct{}),
		quarantined: make(map[uint64]QuarantinedTable),
	}
	db.cond = sync.NewCond(&db.mu)
	if err := db.fs.MkdirAll(dirname, 0o755); err != nil {
		return nil, fmt.Errorf("open %s: create directory: %w", dirname, err)
	}
	// The directory's entry is durable only once its parent is synced. Sync
	// it on every open: an earlier open may have created it and failed
	// before syncing.
	parent, err := db.fs.OpenDir(filepath.Dir(dirname))
	if err != nil {
		return nil, fmt.Errorf("open %s: open parent directory: %w", dirname, err)
	}
	err = parent.Sync()
	parent.Close()
	if err != nil {
		return nil, fmt.Errorf("open %s: sync parent directory: %w", dirname, err)
	}
	lock, err := db.fs.Lock(db.path(lockName))
	if err != nil {
		return nil, fmt.Errorf("open %s: lock (is another engine using it?): %w", dirname, err)
	}
	db.dirLock = lock
	notify, err := db.recover()
	if err != nil {
		db.closeFiles()
		lock.Close()
		return nil, fmt.Errorf("open %s: %w", dirname, err)
	}
	db.bg.Add(2)
	go db.flushLoop()
	go db.compactionLoop()
	if o.Sync == SyncPeriodic {
		db.bg.Add(1)
		go db.periodicSyncLoop()
	}
	db.mu.Lock()
	db.maybeScheduleCompactionLocked()
	db.mu.Unlock()
	for _, q := range notify {
		db.notifyQuarantined(q)
	}
	return db, nil
}

func (db *DB) path(name string) string { return db.fs.PathJoin(db.dirname, name) }

func (db *DB) syncDir() error {
	d, err := db.fs.OpenDir(db.dirname)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", db.dirname, err)
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return fmt.Errorf("sync directory %s: %w", db.dirname, err)
	}
	return d.Close()
}

// Close waits for background work to stop, syncs the commit log and
// releases the directory. Writes acknowledged before Close survive it.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closing {
		db.mu.Unlock()
		return ErrClosed
	}
	db.closing = true
	db.cond.Broadcast()
	db.mu.Unlock()

	// Let the commit queue drain: a write that raced with Close either
	// finished or sees closing.
	for {
		db.qmu.Lock()
		n := len(db.queue)
		db.qmu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	db.bg.Wait()

	var firstErr error
	db.logMu.Lock()
	if db.log != nil && db.bgError() == nil {
		if err := db.log.Finish(); err != nil {
			firstErr = fmt.Errorf("close: sync commit log: %w", err)
		}
	}
	db.logMu.Unlock()
	// A reader quarantining a table writes the manifest under manifestMu;
	// it sees closing, or finishes before the files close.
	db.manifestMu.Lock()
	db.closeFiles()
	db.manifestMu.Unlock()

	db.keepFiles.Store(true)
	db.rsMu.Lock()
	rs := db.rs
	db.rs = nil
	db.rsMu.Unlock()
	if rs != nil {
		rs.unref()
	}
	db.mu.Lock()
	cur := db.current
	db.current = nil
	db.mu.Unlock()
	if cur != nil {
		cur.unref()
	}
	// The spare will not be used again: leave it to the collector without
	// its huge-page advice (memtable.Release).
	db.spareMu.Lock()
	spare := db.spareMem
	db.spareMem, db.spareClosed = nil, true
	db.spareMu.Unlock()
	if spare != nil {
		spare.Release()
	}
	if err := db.dirLock.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	return firstErr
}

func (db *DB) closeFiles() {
	if db.log != nil {
		db.log.Close()
		db.log = nil
		db.logFile = nil
	}
	if db.manifestWriter != nil {
		db.manifestWriter.Close()
		db.manifestWriter = nil
		db.manifestFile = nil
	}
}

// bgError returns the error that failed the engine, if any.
func (db *DB) bgError() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.bgErr
}

// fail puts the engine in the failed state: it acknowledges no further write.
func (db *DB) fail(err error) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.failLocked(err)
}

func (db *DB) failLocked(err error) error {
	if db.bgErr == nil {
		db.bgErr = fmt.Errorf("%w: %w", ErrFailed, err)
		db.opts.Logf("storage: engine failed: %v", err)
	}
	db.cond.Broadcast()
	return db.bgErr
}

// loadReadState returns the current read state with a reference taken.
func (db *DB) loadReadState() (*readState, error) {
	db.rsMu.RLock()
	rs := db.rs
	if rs == nil {
		db.rsMu.RUnlock()
		return nil, ErrClosed
	}
	rs.refs.Add(1)
	db.rsMu.RUnlock()
	return rs, nil
}

// updateReadStateLocked publishes the current memtables and version. db.mu
// must be held.
func (db *DB) updateReadStateLocked() {
	rs := &readState{mem: db.mem, v: db.current}
	rs.refs.Store(1)
	db.current.ref()
	db.mem.ref()
	for i := len(db.imm) - 1; i >= 0; i-- {
		db.imm[i].ref()
		rs.imm = append(rs.imm, db.imm[i])
	}
	db.rsMu.Lock()
	old := db.rs
	db.rs = rs
	db.rsMu.Unlock()
	if old != nil {
		old.unref()
	}
}

// Get returns a copy of the value of key, or ErrNotFound.
func (db *DB) Get(key []byte) ([]byte, error) {
	return db.getCopyAt(key, base.SeqNum(db.visibleSeq.Load()))
}

// getCopyAt is getAt with the value always a copy.
func (db *DB) getCopyAt(key []byte, seq base.SeqNum) ([]byte, error) {
	v, copied, err := db.getAt(key, seq)
	if !copied {
		v = bytes.Clone(v)
	}
	return v, err
}

// GetShared is Get without the copy when the value comes from a table: it
// then aliases the table's block (cached or just read), which is never
// modified or reused while anything references it, so the value stays
// valid for as long as the caller holds it, and keeps that one block
// alive. A value still in a memtable is copied: the arena is reused for a
// later memtable once no read state holds it (and a slice of it would
// otherwise keep the whole arena alive). The caller must not modify the
// value; its capacity is its length, so an append copies it.
func (db *DB) GetShared(key []byte) ([]byte, error) {
	v, _, err := db.getAt(key, base.SeqNum(db.visibleSeq.Load()))
	return v[:len(v):len(v)], err
}

// getAt returns the value of key at seq: a copy when it comes from a
// memtable (copied is true; the arena is reused for a later memtable once
// the read state is released), else aliasing the table block it is in.
func (db *DB) getAt(key []byte, seq base.SeqNum) (value []byte, copied bool, err error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	rs, err := db.loadReadState()
	if err != nil {
		return nil, false, err
	}
	defer rs.unref()
	value, kind, found, inMemtable, err := rs.get(key, seq)
	if err != nil {
		err = fmt.Errorf("get %q: %w", string(key), err) // a copy: key does not escape
		db.noteReadError(err)
		return nil, false, err
	}
	if !found || kind == base.KindDelete {
		return nil, false, ErrNotFound
	}
	if inMemtable {
		return bytes.Clone(value), true, nil // before rs.unref
	}
	return value, false, nil
}

// get searches newest to oldest: memtable, immutable memtables, L0 tables
// (newest first), then one table per deeper level. The first version found
// at or below seq is the answer; inMemtable tells whether it was found in
// a memtable.
func (rs *readState) get(key []byte, seq base.SeqNum) (value []byte, kind base.Kind, found, inMemtable bool, err error) {
	if v, k, ok := rs.mem.mt.Get(key, seq); ok {
		return v, k, true, true, nil
	}
	for _, m := range rs.imm {
		if v, k, ok := m.mt.Get(key, seq); ok {
			return v, k, true, true, nil
		}
	}
	for _, f := range rs.v.levels[0] {
		if bytes.Compare(key, f.smallestUser()) < 0 || bytes.Compare(key, f.largestUser()) > 0 {
			continue
		}
		if v, k, ok, err := f.get(key, seq); err != nil || ok {
			return v, k, ok, false, err
		}
	}
	for level := 1; level < NumLevels; level++ {
		files := rs.v.levels[level]
		i := findFile(files, key)
		if i == len(files) || bytes.Compare(key, files[i].smallestUser()) < 0 {
			continue
		}
		if v, k, ok, err := files[i].get(key, seq); err != nil || ok {
			return v, k, ok, false, err
		}
	}
	return nil, 0, false, false, nil
}

// Set writes key = value.
func (db *DB) Set(key, value []byte) error {
	b := getBatch()
	b.Set(key, value)
	err := db.Apply(b, nil)
	putBatch(b)
	return err
}

// Delete removes key.
func (db *DB) Delete(key []byte) error {
	b := getBatch()
	b.Delete(key)
	err := db.Apply(b, nil)
	putBatch(b)
	return err
}

var batchPool = sync.Pool{New: func() any { return newBatch() }}

func getBatch() *Batch { return batchPool.Get().(*Batch) }

func putBatch(b *Batch) {
	if cap(b.data) > 1<<20 {
		return
	}
	b.Reset()
	batchPool.Put(b)
}

// newMemTable returns an empty memtable of the given arena size, with the
// point-lookup index when the options ask for it: the spare one when there
// is one of that size, emptied, else a new one.
func (db *DB) newMemTable(size int) *memtable.MemTable {
	db.spareMu.Lock()
	spare := db.spareMem
	if spare != nil && spare.ArenaSize() == size {
		db.spareMem = nil
	} else {
		spare = nil
	}
	db.spareMu.Unlock()
	if spare != nil {
		spare.Reset()
		db.m.memTablesReused.Add(1)
		return spare
	}
	var m *memtable.MemTable
	if db.opts.MemTableIndex {
		m = memtable.NewIndexed(size)
	} else {
		m = memtable.New(size)
	}
	if db.opts.MemTableFingers {
		m.UseFingers(db.opts.MemTableFingerOffset)
	}
	return m
}

// recycleMemTable keeps mt, which nothing references any longer, as the
// spare for the next memtable, if it has the normal size, there is no
// spare yet and the engine is open; otherwise it releases it
// (memtable.Release) for the garbage collector. A memtable of the normal
// size is tens of MiB: a fresh one costs the writer that rotates an
// allocation the runtime zeroes and a page fault per page, hundreds of
// milliseconds on some virtual machines, where Reset costs clearing the
// index.
func (db *DB) recycleMemTable(mt *memtable.MemTable) {
	if mt.ArenaSize() != db.opts.MemTableSize {
		mt.Release() // a dedicated memtable for a large entry
		return
	}
	db.spareMu.Lock()
	kept := db.spareMem == nil && !db.spareClosed
	if kept {
		db.spareMem = mt
	}
	db.spareMu.Unlock()
	if !kept {
		mt.Release()
	}
}
