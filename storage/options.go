package storage

import (
	"fmt"
	"time"

	"github.com/ringkv/ringkv/storage/vfs"
)

// Limits on what one write may carry. The cluster layer enforces its own,
// smaller limits on top of these.
const (
	MaxKeySize   = 64 << 10
	MaxValueSize = 64 << 20
)

// SyncMode says when the commit log is fsynced.
type SyncMode int

const (
	// SyncBatch acknowledges a write only after the commit-log fsync that
	// covers it; concurrent writers share one write and one fsync (group
	// commit). The default.
	SyncBatch SyncMode = iota
	// SyncPeriodic acknowledges a write once it is in the operating system's
	// page cache and fsyncs the log every SyncInterval. A machine crash may
	// lose up to one interval of acknowledged writes; a process crash loses
	// none.
	SyncPeriodic
	// SyncNone never fsyncs the log on its own (tables and the manifest are
	// still fsynced). A process crash loses nothing written; a machine crash
	// may lose everything since the last flush.
	SyncNone
)

func (m SyncMode) String() string {
	switch m {
	case SyncBatch:
		return "batch"
	case SyncPeriodic:
		return "periodic"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// ParseSyncMode parses "batch", "periodic" or "none".
func ParseSyncMode(s string) (SyncMode, error) {
	switch s {
	case "batch", "":
		return SyncBatch, nil
	case "periodic":
		return SyncPeriodic, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("unknown sync mode %q (want batch, periodic or none)", s)
}

// Compression names a block compression algorithm.
type Compression uint8

const (
	// SnappyCompression compresses each block with Snappy when that saves at
	// least 1/8 of its size. The default.
	SnappyCompression Compression = iota
	// NoCompression stores blocks as they are.
	NoCompression
)

// Options configure an engine. The zero value of every field means its
// documented default; EnsureDefaults fills them in.
type Options struct {
	// FS is the filesystem. Default: the operating system's.
	FS vfs.FS
	// Sync is the commit-log sync mode. Default: SyncBatch.
	Sync SyncMode
	// SyncInterval is the fsync period for SyncPeriodic. Default: 100ms.
	SyncInterval time.Duration
	// MemTableSize is the size at which the memtable is rotated and flushed.
	// Default: 8 MiB.
	MemTableSize int
	// MemTableIndex adds a hash index to every memtable so that point
	// lookups of recently written keys cost O(1) instead of a skiplist
	// descent, at about MemTableSize/8 more memory and a little write
	// throughput. Worth it where keys are read soon after they are written
	// (the cluster's replicas read each key before writing it). Default: off.
	MemTableIndex bool
	// MemTableFingers tells the memtable that keys hold a uniformly
	// distributed 8-byte field (a hash, a ring token) starting at byte
	// MemTableFingerOffset, so that an insert can start its search next to
	// where the key belongs instead of at the list's head (see
	// memtable.UseFingers): an insert into a large memtable of such keys
	// costs about 2.5 times less. It changes no result, and keys without
	// such a field are only not faster. The memtable takes arena/32 more
	// bytes for it. Default: off.
	MemTableFingers      bool
	MemTableFingerOffset int
	// MaxImmutableMemTables is how many full memtables may wait for their
	// flush before writers stop. Default: 2.
	MaxImmutableMemTables int
	// BlockSize is the target uncompressed size of a data block. Default: 4 KiB.
	BlockSize int
	// BlockRestartInterval is the number of keys between restart points in a
	// block. Default: 16.
	BlockRestartInterval int
	// BloomBitsPerKey sizes each table's bloom filter. Default: 10. A negative
	// value disables bloom filters.
	BloomBitsPerKey int
	// Compression is the block compression. Default: SnappyCompression.
	Compression Compression
	// BytesPerSync starts the writeback of a table being written (by a
	// flush or a compaction) every this many bytes, so that its final
	// fsync does not put the whole table ahead of a commit-log fsync in
	// the disk's queue (see sstable.WriterOptions). Default (0): 512 KiB;
	// negative: never, for filesystems where starting a writeback blocks
	// (ZFS is said to).
	BytesPerSync int
	// BackgroundShare is the share of one processor that a flush or a
	// compaction takes while writes are arriving and it is not behind
	// (see pacer): it works in slices of a millisecond or more and
	// sleeps between them. Default (0): 0.5; at least 0.05; 1 or more:
	// no pacing.
	BackgroundShare float64
	// BlockCacheSize bounds the block cache shared by all tables, in bytes.
	// Default: 8 MiB.
	BlockCacheSize int64
	// L0's triggers count its depth: the most L0 tables that any one key
	// lies in, which is how many L0 tables a read may search. A flush adds
	// one to it however many tables it cuts its memtable into.
	//
	// L0CompactionTrigger is the L0 depth that starts a compaction into
	// L1. Default: 4.
	L0CompactionTrigger int
	// L0CompactionFileTrigger is the number of L0 tables that starts a
	// compaction into L1 whatever the depth, so that flushes of disjoint
	// key ranges (sequential keys) do not pile up in L0. Default: 64.
	L0CompactionFileTrigger int
	// L0SlowdownTrigger is the L0 depth at which each write is delayed a
	// little so compaction can catch up. Default: 12; never below
	// L0CompactionTrigger.
	L0SlowdownTrigger int
	// L0StopTrigger is the L0 depth at which writes wait for compaction.
	// Default: 20; never below L0SlowdownTrigger. Writers also wait when
	// L0 holds L0StopTrigger/L0CompactionTrigger times
	// L0CompactionFileTrigger tables (320 by default), however shallow.
	L0StopTrigger int
	// LBaseMaxBytes is the target size of L1. Default: 64 MiB.
	LBaseMaxBytes int64
	// LevelMultiplier is the size ratio between adjacent levels. Default: 10.
	LevelMultiplier int
	// TargetFileSize is the size at which a compaction output table is cut.
	// Default: 4 MiB.
	TargetFileSize int64
	// MaxOpenTables bounds the table-reader cache. Default: 1000.
	MaxOpenTables int
	// OnQuarantine, if set, is told about every table the engine
	// quarantines (see DB.Quarantined): once per table, after the table is
	// out of the version, outside the engine's locks, on the goroutine that
	// found the damage (a reader, the compaction goroutine, or Open before
	// it returns). The engine no longer holds the table's keys: reads of
	// [Smallest, Largest] may now answer with older values or not found,
	// and the owner is expected to repair that range from elsewhere (the
	// cluster's replicas). Keep it short; hand slow work to another
	// goroutine. Default: nil.
	OnQuarantine func(QuarantinedTable)
	// DisableQuarantine keeps damaged tables in service: every read that
	// meets one fails with ErrCorruption, a compaction that meets one fails
	// the engine, and Open refuses a table whose size or footer is wrong.
	// For an engine with no replica to repair from. Default: off
	// (quarantine).
	DisableQuarantine bool
	// RefuseCorruptTablesAtOpen makes Open fail with ErrCorruption when a
	// table the manifest lists has the wrong size or an unreadable footer,
	// instead of quarantining it. Tables damaged elsewhere are still
	// quarantined when a read or a compaction meets them. Default: off
	// (Open quarantines them and opens).
	RefuseCorruptTablesAtOpen bool
	// Logf receives human-readable events (flushes, compactions, recovery).
	// Default: discard.
	Logf func(format string, args ...any)
}

// minBackgroundShare is the least Options.BackgroundShare: a paced job
// sleeps at most 19 times as long as it works.
const minBackgroundShare = 0.05

// NumLevels is the number of levels of the LSM tree.
const NumLevels = 7

// EnsureDefaults returns a copy of o with every zero field set to its default.
// A nil o gives all defaults.
func (o *Options) EnsureDefaults() *Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = 100 * time.Millisecond
	}
	if c.MemTableSize <= 0 {
		c.MemTableSize = 8 << 20
	}
	if c.MaxImmutableMemTables <= 0 {
		c.MaxImmutableMemTables = 2
	}
	if c.BlockSize <= 0 {
		c.BlockSize = 4 << 10
	}
	if c.BlockRestartInterval <= 0 {
		c.BlockRestartInterval = 16
	}
	if c.BloomBitsPerKey == 0 {
		c.BloomBitsPerKey = 10
	}
	if !(c.BackgroundShare > 0) { // also NaN
		c.BackgroundShare = 0.5
	}
	c.BackgroundShare = max(c.BackgroundShare, minBackgroundShare)
	if c.BlockCacheSize <= 0 {
		c.BlockCacheSize = 8 << 20
	}
	if c.L0CompactionTrigger <= 0 {
		c.L0CompactionTrigger = 4
	}
	if c.L0CompactionFileTrigger <= 0 {
		c.L0CompactionFileTrigger = 64
	}
	if c.L0SlowdownTrigger <= 0 {
		c.L0SlowdownTrigger = 12
	}
	if c.L0StopTrigger <= 0 {
		c.L0StopTrigger = 20
	}
	// Writers slowed or stopped below the compaction trigger would wait
	// for a compaction that never starts.
	c.L0SlowdownTrigger = max(c.L0SlowdownTrigger, c.L0CompactionTrigger)
	c.L0StopTrigger = max(c.L0StopTrigger, c.L0SlowdownTrigger)
	if c.LBaseMaxBytes <= 0 {
		c.LBaseMaxBytes = 64 << 20
	}
	if c.LevelMultiplier <= 1 {
		c.LevelMultiplier = 10
	}
	if c.TargetFileSize <= 0 {
		c.TargetFileSize = 4 << 20
	}
	if c.MaxOpenTables <= 0 {
		c.MaxOpenTables = 1000
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return &c
}
