package engines

import (
	"bytes"
	"fmt"
	"testing"
)

// TestEngines checks every adapter against the same small script: writes,
// point reads of present and absent keys, a full iteration, a seek, and the
// data surviving a close and reopen.
func TestEngines(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			e, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{CacheSize: 1 << 20, MemTableSize: 1 << 20, BlockSize: 4096, BloomBitsPerKey: 10}
			if e.Settings(cfg) == "" {
				t.Error("empty settings")
			}
			dir := t.TempDir()
			db, err := e.Open(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			const n = 2000
			key := func(i int) []byte { return fmt.Appendf(nil, "%016d", i) }
			val := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 100) }
			for i := 0; i < n; i += 2 { // even keys only
				if err := db.Set(key(i), val(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if db, err = e.Open(dir, cfg); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := db.Close(); err != nil {
					t.Error(err)
				}
			}()
			for i := range n {
				vlen, found, err := db.Get(key(i))
				if err != nil {
					t.Fatal(err)
				}
				if want := i%2 == 0; found != want || (found && vlen != 100) {
					t.Fatalf("Get(%d) = %d, %t; want found=%t", i, vlen, found, want)
				}
			}
			it, err := db.NewIter()
			if err != nil {
				t.Fatal(err)
			}
			count := 0
			for ok := it.First(); ok; ok = it.Next() {
				if !bytes.Equal(it.Key(), key(2*count)) || !bytes.Equal(it.Value(), val(2*count)) {
					t.Fatalf("entry %d: %q", count, it.Key())
				}
				count++
			}
			if count != n/2 {
				t.Fatalf("iterated %d keys, want %d", count, n/2)
			}
			if !it.SeekGE(key(101)) || !bytes.Equal(it.Key(), key(102)) {
				t.Fatalf("SeekGE(101) landed on %q", it.Key())
			}
			if !it.Next() || !bytes.Equal(it.Key(), key(104)) {
				t.Fatalf("Next after seek landed on %q", it.Key())
			}
			if err := it.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBloomFalsePositive(t *testing.T) {
	if p := bloomFalsePositive(10); p < 0.008 || p > 0.0085 {
		t.Fatalf("bloomFalsePositive(10) = %v", p)
	}
}
