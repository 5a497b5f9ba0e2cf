package engines

import (
	"errors"
	"fmt"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

func init() {
	register(Engine{Name: "goleveldb", Open: openLevelDB, Settings: levelDBSettings})
}

func levelDBSettings(cfg Config) string {
	return fmt.Sprintf("BlockCacheCapacity=%d, WriteBuffer=%d, BlockSize=%d, Filter=NewBloomFilter(%d), "+
		"Compression=Snappy; writes use WriteOptions{Sync: %t}; other options default",
		cfg.CacheSize, cfg.MemTableSize, cfg.BlockSize, cfg.BloomBitsPerKey, cfg.Sync)
}

type levelDB struct {
	db *leveldb.DB
	wo *opt.WriteOptions
}

func openLevelDB(dir string, cfg Config) (DB, error) {
	db, err := leveldb.OpenFile(dir, &opt.Options{
		BlockCacheCapacity: int(cfg.CacheSize),
		WriteBuffer:        cfg.MemTableSize,
		BlockSize:          cfg.BlockSize,
		Filter:             filter.NewBloomFilter(cfg.BloomBitsPerKey),
		Compression:        opt.SnappyCompression,
	})
	if err != nil {
		return nil, err
	}
	return &levelDB{db: db, wo: &opt.WriteOptions{Sync: cfg.Sync}}, nil
}

func (l *levelDB) Set(key, value []byte) error { return l.db.Put(key, value, l.wo) }

func (l *levelDB) Get(key []byte) (int, bool, error) {
	v, err := l.db.Get(key, nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return len(v), true, nil
}

func (l *levelDB) NewIter() (Iter, error) { return levelDBIter{l.db.NewIterator(nil, nil)}, nil }

// EngineWriteAmp uses DBStats.IOWrite: every byte goleveldb wrote through its
// storage layer (journal, tables, manifest).
func (l *levelDB) EngineWriteAmp(logical int64) (float64, bool) {
	var s leveldb.DBStats
	if logical <= 0 || l.db.Stats(&s) != nil {
		return 0, false
	}
	return float64(s.IOWrite) / float64(logical), true
}

func (l *levelDB) Close() error { return l.db.Close() }

type levelDBIter struct{ it iterator.Iterator }

func (i levelDBIter) First() bool          { return i.it.First() }
func (i levelDBIter) SeekGE(k []byte) bool { return i.it.Seek(k) }
func (i levelDBIter) Next() bool           { return i.it.Next() }
func (i levelDBIter) Key() []byte          { return i.it.Key() }
func (i levelDBIter) Value() []byte        { return i.it.Value() }
func (i levelDBIter) Error() error         { return i.it.Error() }
func (i levelDBIter) Close() error         { i.it.Release(); return i.it.Error() }
