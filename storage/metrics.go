package storage

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/storage/cache"
)

// metricsCounters are the engine's running counters (since Open).
type metricsCounters struct {
	writes            atomic.Uint64
	userBytes         atomic.Uint64
	walBytes          atomic.Uint64
	walSyncs          atomic.Uint64
	flushes           atomic.Uint64
	memTablesReused   atomic.Uint64
	flushBytes        atomic.Uint64
	compactions       atomic.Uint64
	moves             atomic.Uint64
	compactReadBytes  atomic.Uint64
	compactWriteBytes atomic.Uint64
	stalls            atomic.Uint64
	stallNanos        atomic.Uint64
	quarantines       atomic.Uint64
	walSyncNanos      atomic.Uint64
	walSyncBuckets    [len(SyncLatencyBounds) + 1]atomic.Uint64
}

// SyncLatencyBounds are the upper bounds of Metrics.WALSyncLatency's
// buckets but the last, which counts the slower syncs.
var SyncLatencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
}

// recordSync counts one commit-log fsync that took d.
func (m *metricsCounters) recordSync(d time.Duration) {
	m.walSyncs.Add(1)
	m.walSyncNanos.Add(uint64(d))
	i := 0
	for i < len(SyncLatencyBounds) && d > SyncLatencyBounds[i] {
		i++
	}
	m.walSyncBuckets[i].Add(1)
}

func (m *metricsCounters) recordStall(d time.Duration) {
	m.stalls.Add(1)
	m.stallNanos.Add(uint64(d))
}

// LevelMetrics describe one level of the tree.
type LevelMetrics struct {
	Tables int
	Bytes  uint64
}

// Metrics is a point-in-time view of the engine. Counters count since Open.
type Metrics struct {
	Levels [NumLevels]LevelMetrics
	// L0Depth is the most L0 tables any one key lies in: what L0's
	// compaction and stall triggers count (see Options).
	L0Depth int
	// MemTableBytes is the arena use of the active memtable;
	// ImmutableMemTables how many full memtables wait for their flush.
	MemTableBytes      int
	ImmutableMemTables int

	Writes    uint64 // operations committed
	UserBytes uint64 // encoded size of the batches committed
	WALBytes  uint64 // bytes written to commit logs
	WALSyncs  uint64 // commit-log fsyncs (one per commit group that asked)
	// WALSyncLatency counts those fsyncs by duration, in the buckets of
	// SyncLatencyBounds plus one for slower; WALSyncTime is their sum.
	WALSyncLatency [len(SyncLatencyBounds) + 1]uint64
	WALSyncTime    time.Duration

	Flushes uint64
	// MemTablesReused counts the memtables that reused the arena of a
	// flushed one instead of allocating their own.
	MemTablesReused      uint64
	FlushBytes           uint64 // bytes of L0 tables written by flushes
	Compactions          uint64
	TrivialMoves         uint64 // tables moved down a level without rewriting
	CompactionReadBytes  uint64
	CompactionWriteBytes uint64

	WriteStalls        uint64 // writes that were delayed or stopped
	WriteStallDuration time.Duration

	// TablesQuarantined counts the tables taken out of service as damaged
	// since Open (those found by Open included); DB.Quarantined lists every
	// table kept aside, earlier runs' too.
	TablesQuarantined uint64

	BlockCache cache.Metrics
}

// WriteAmplification is the bytes the engine wrote to disk (commit log,
// flushes, compactions) per byte of user writes.
func (m Metrics) WriteAmplification() float64 {
	if m.UserBytes == 0 {
		return 0
	}
	return float64(m.WALBytes+m.FlushBytes+m.CompactionWriteBytes) / float64(m.UserBytes)
}

// Metrics returns the engine's current metrics.
func (db *DB) Metrics() Metrics {
	var m Metrics
	db.mu.Lock()
	if db.current != nil {
		for level := range db.current.levels {
			m.Levels[level] = LevelMetrics{Tables: db.current.numFiles(level), Bytes: db.current.levelBytes(level)}
		}
		m.L0Depth = db.current.l0Depth
	}
	if db.mem != nil {
		m.MemTableBytes = db.mem.mt.ApproximateSize()
	}
	m.ImmutableMemTables = len(db.imm)
	db.mu.Unlock()
	c := &db.m
	m.Writes = c.writes.Load()
	m.UserBytes = c.userBytes.Load()
	m.WALBytes = c.walBytes.Load()
	m.WALSyncs = c.walSyncs.Load()
	m.WALSyncTime = time.Duration(c.walSyncNanos.Load())
	for i := range c.walSyncBuckets {
		m.WALSyncLatency[i] = c.walSyncBuckets[i].Load()
	}
	m.Flushes = c.flushes.Load()
	m.MemTablesReused = c.memTablesReused.Load()
	m.FlushBytes = c.flushBytes.Load()
	m.Compactions = c.compactions.Load()
	m.TrivialMoves = c.moves.Load()
	m.CompactionReadBytes = c.compactReadBytes.Load()
	m.CompactionWriteBytes = c.compactWriteBytes.Load()
	m.WriteStalls = c.stalls.Load()
	m.WriteStallDuration = time.Duration(c.stallNanos.Load())
	m.TablesQuarantined = c.quarantines.Load()
	m.BlockCache = db.cache.Metrics()
	return m
}

// String renders the metrics as a small table for humans.
func (m Metrics) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "level  tables        bytes\n")
	for level, l := range m.Levels {
		fmt.Fprintf(&b, "L%d     %6d %12d\n", level, l.Tables, l.Bytes)
	}
	fmt.Fprintf(&b, "memtable %d bytes, %d immutable\n", m.MemTableBytes, m.ImmutableMemTables)
	fmt.Fprintf(&b, "writes %d (%d bytes), wal %d bytes in %d syncs\n", m.Writes, m.UserBytes, m.WALBytes, m.WALSyncs)
	fmt.Fprintf(&b, "flushes %d (%d bytes), compactions %d (+%d moves) read %d wrote %d\n",
		m.Flushes, m.FlushBytes, m.Compactions, m.TrivialMoves, m.CompactionReadBytes, m.CompactionWriteBytes)
	fmt.Fprintf(&b, "write stalls %d (%s), write amplification %.2f\n", m.WriteStalls, m.WriteStallDuration, m.WriteAmplification())
	if m.TablesQuarantined > 0 {
		fmt.Fprintf(&b, "tables quarantined %d\n", m.TablesQuarantined)
	}
	fmt.Fprintf(&b, "block cache %d/%d bytes, hit rate %.3f\n", m.BlockCache.Size, m.BlockCache.Capacity, m.BlockCache.HitRate())
	return b.String()
}
