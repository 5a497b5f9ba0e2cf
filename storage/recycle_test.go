package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/storage/vfs"
)

// A flushed memtable's arena is reused for a later memtable once nothing
// references it. Readers that are still at it (point reads, iterators,
// snapshot reads) must never see the bytes of a later memtable: every value
// written here names its key and a version, and every read checks that the
// value it got is one written for that key, no older than a version already
// acknowledged when the read started. Small memtables make the engine
// rotate, flush and reuse arenas all the time while the readers run.
func TestReusedMemtablesNeverShowReadersOtherBytes(t *testing.T) {
	db, err := Open("db", &Options{FS: vfs.NewMem(), Sync: SyncNone, MemTableSize: 64 << 10, MemTableIndex: true,
		MemTableFingers: true, MemTableFingerOffset: 1, BlockSize: 1 << 10, BlockCacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const keys = 300
	key := func(i int) []byte { return fmt.Appendf(nil, "k%08x", uint32(i)*2654435761) }
	value := func(i int, ver uint64) []byte {
		v := fmt.Appendf(nil, "%s@%d;", key(i), ver)
		return bytes.Repeat(v, 1+int(ver%7))
	}
	// check reports why got is not a value of key i at version min or later.
	check := func(i int, got []byte, min uint64) error {
		var ver uint64
		var k string
		prefix, _, ok := bytes.Cut(got, []byte(";"))
		if !ok {
			return fmt.Errorf("key %d: %q is no value", i, got)
		}
		if _, err := fmt.Sscanf(string(bytes.ReplaceAll(prefix, []byte("@"), []byte(" "))), "%s %d", &k, &ver); err != nil || k != string(key(i)) {
			return fmt.Errorf("key %s: got the value %q", key(i), got)
		}
		if !bytes.Equal(got, value(i, ver)) {
			return fmt.Errorf("key %s: %q is damaged", key(i), got)
		}
		if ver < min {
			return fmt.Errorf("key %s: version %d, older than %d acknowledged before the read", key(i), ver, min)
		}
		return nil
	}
	var acked [keys]atomic.Uint64 // each key's newest acknowledged version
	for i := range keys {
		if err := db.Set(key(i), value(i, 1)); err != nil {
			t.Fatal(err)
		}
		acked[i].Store(1)
	}
	deadline := time.Now().Add(3 * time.Second)
	var stop atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
		stop.Store(true)
	}
	// One writer per key range, so that a key's versions only grow.
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for n := 0; !stop.Load() && time.Now().Before(deadline); n++ {
				i := w*keys/2 + rng.IntN(keys/2)
				ver := acked[i].Load() + 1
				if err := db.Set(key(i), value(i, ver)); err != nil {
					fail(err)
					return
				}
				acked[i].Store(ver)
			}
		}()
	}
	readers := []func(rng *rand.Rand) error{
		func(rng *rand.Rand) error { // Get
			i := rng.IntN(keys)
			min := acked[i].Load()
			got, err := db.Get(key(i))
			if err != nil {
				return err
			}
			return check(i, got, min)
		},
		func(rng *rand.Rand) error { // GetShared, held across later writes
			i := rng.IntN(keys)
			min := acked[i].Load()
			got, err := db.GetShared(key(i))
			if err != nil {
				return err
			}
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
			return check(i, got, min)
		},
		func(rng *rand.Rand) error { // a snapshot read
			i := rng.IntN(keys)
			min := acked[i].Load()
			s := db.NewSnapshot()
			defer s.Close()
			got, err := s.Get(key(i))
			if err != nil {
				return err
			}
			return check(i, got, min)
		},
		func(rng *rand.Rand) error { // an iterator, slowly, over part of the keys
			var min [keys]uint64
			for i := range keys {
				min[i] = acked[i].Load()
			}
			byKey := map[string]int{}
			for i := range keys {
				byKey[string(key(i))] = i
			}
			it := db.NewIter(nil)
			seen := 0
			for ok := it.First(); ok && seen < 50; ok = it.Next() {
				i, known := byKey[string(it.Key())]
				if !known {
					it.Close()
					return fmt.Errorf("iterator: unknown key %q", it.Key())
				}
				if err := check(i, it.Value(), min[i]); err != nil {
					it.Close()
					return fmt.Errorf("iterator: %w", err)
				}
				seen++
				if seen%10 == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			return it.Close()
		},
	}
	for r, read := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			for !stop.Load() && time.Now().Before(deadline) {
				if err := read(rng); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	m := db.Metrics()
	t.Logf("%d writes, %d flushes, %d memtables reused", m.Writes, m.Flushes, m.MemTablesReused)
	if m.MemTablesReused == 0 {
		t.Fatalf("no memtable reused in %d flushes: the test did not test reuse", m.Flushes)
	}
	for i := range keys {
		got, err := db.Get(key(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := check(i, got, acked[i].Load()); err != nil {
			t.Fatal(err)
		}
	}
}

// A closed iterator no longer reads its memtables, whose arenas may hold a
// later memtable's entries by then: positioning it finds nothing.
func TestClosedIteratorPositionsNowhere(t *testing.T) {
	db, err := Open("db", &Options{FS: vfs.NewMem(), Sync: SyncNone, MemTableSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 100 {
		if err := db.Set(fmt.Appendf(nil, "old%04d", i), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	it := db.NewIter(nil)
	if !it.First() {
		t.Fatal("no first key")
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	// Under the race detector, a closed iterator that still read its
	// arena while the writer refills it is a reported race.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20000 {
			if it.First() || it.SeekGE([]byte("n")) {
				return
			}
		}
	}()
	defer func() { <-done }()
	for _, flush := range []bool{true, false, true} { // the old arena is the new memtable's now
		if err := db.Set([]byte("x"), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if flush {
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 3000 {
		if err := db.Set(fmt.Appendf(nil, "new%04d", i), []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	if db.Metrics().MemTablesReused == 0 {
		t.Fatal("no memtable was reused: the test does not test a reused arena")
	}
	<-done
	if it.First() || it.SeekGE([]byte("a")) || it.Next() || it.Valid() {
		t.Fatalf("a closed iterator positioned at %q", it.Key())
	}
}
