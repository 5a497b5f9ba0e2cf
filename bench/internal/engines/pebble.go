package engines

import (
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
)

func init() {
	register(Engine{Name: "pebble", Open: openPebble, Settings: pebbleSettings})
}

// pebbleCacheSize is the size given to Pebble's cache. Pebble charges its
// memtables against the block cache (Cache.Reserve for every live memtable),
// so with a cache no larger than a memtable it caches no blocks at all. To
// leave Pebble the same block-cache capacity as the other engines, its cache
// also gets room for two memtables: the active one and one being flushed.
func pebbleCacheSize(cfg Config) int64 { return cfg.CacheSize + 2*int64(cfg.MemTableSize) }

func pebbleSettings(cfg Config) string {
	return fmt.Sprintf("Cache=NewCache(%d) (block cache + 2×memtable, because Pebble reserves its memtables "+
		"in the block cache), MemTableSize=%d, all levels: BlockSize=%d, FilterPolicy=bloom.FilterPolicy(%d), "+
		"Compression=Snappy; writes use %s; Logger silenced; other options default",
		pebbleCacheSize(cfg), cfg.MemTableSize, cfg.BlockSize, cfg.BloomBitsPerKey, pebbleSyncName(cfg.Sync))
}

// quietLogger discards Pebble's informational log lines (WAL replay and the
// like) but still reports errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pebble: "+format+"\n", args...)
	os.Exit(1)
}

func pebbleSyncName(sync bool) string {
	if sync {
		return "pebble.Sync"
	}
	return "pebble.NoSync"
}

type pebbleDB struct {
	db *pebble.DB
	wo *pebble.WriteOptions
}

func openPebble(dir string, cfg Config) (DB, error) {
	cache := pebble.NewCache(pebbleCacheSize(cfg))
	defer cache.Unref() // the DB holds its own reference
	opts := &pebble.Options{
		Cache:        cache,
		MemTableSize: uint64(cfg.MemTableSize),
		Logger:       quietLogger{},
	}
	for i := range opts.Levels {
		opts.Levels[i] = pebble.LevelOptions{
			BlockSize:    cfg.BlockSize,
			FilterPolicy: bloom.FilterPolicy(cfg.BloomBitsPerKey),
			Compression:  func() *sstable.CompressionProfile { return sstable.SnappyCompression },
		}
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	wo := pebble.NoSync
	if cfg.Sync {
		wo = pebble.Sync
	}
	return &pebbleDB{db: db, wo: wo}, nil
}

func (p *pebbleDB) Set(key, value []byte) error { return p.db.Set(key, value, p.wo) }

func (p *pebbleDB) Get(key []byte) (int, bool, error) {
	v, closer, err := p.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	n := len(v)
	return n, true, closer.Close()
}

func (p *pebbleDB) NewIter() (Iter, error) {
	it, err := p.db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	return pebbleIter{it}, nil
}

// EngineWriteAmp counts the WAL, flushed and compacted bytes Pebble reports
// (Metrics.Total folds the WAL bytes into TableBytesFlushed).
func (p *pebbleDB) EngineWriteAmp(logical int64) (float64, bool) {
	if logical <= 0 {
		return 0, false
	}
	t := p.db.Metrics().Total()
	written := t.TableBytesFlushed + t.TableBytesCompacted + t.BlobBytesFlushed + t.BlobBytesCompacted
	return float64(written) / float64(logical), true
}

func (p *pebbleDB) Close() error { return p.db.Close() }

type pebbleIter struct{ it *pebble.Iterator }

func (i pebbleIter) First() bool          { return i.it.First() }
func (i pebbleIter) SeekGE(k []byte) bool { return i.it.SeekGE(k) }
func (i pebbleIter) Next() bool           { return i.it.Next() }
func (i pebbleIter) Key() []byte          { return i.it.Key() }
func (i pebbleIter) Value() []byte        { return i.it.Value() }
func (i pebbleIter) Error() error         { return i.it.Error() }
func (i pebbleIter) Close() error         { return i.it.Close() }
