package engines

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestDbgPebble(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{CacheSize: 8 << 20, MemTableSize: 8 << 20, BlockSize: 4096, BloomBitsPerKey: 10}
	db, _ := openPebble(dir, cfg)
	v := make([]byte, 100)
	for i := range 50000 {
		db.Set([]byte(fmt.Sprintf("%016d", i)), v)
	}
	db.Close()
	db, _ = openPebble(dir, cfg)
	p := db.(*pebbleDB).db
	t.Logf("opts cache %+v", p)
	for range 20000 {
		db.Get([]byte(fmt.Sprintf("%016d", rand.IntN(50000))))
	}
	m := p.Metrics()
	t.Logf("bc %+v filter %+v", m.BlockCache, m.Filter)
	db.Close()
	_ = pebble.Sync
}
