package sstable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/cache"
)

// FuzzBlockDecoder feeds arbitrary bytes to the block iterator and the other
// block-level decoders: they may fail, never panic or loop.
func FuzzBlockDecoder(f *testing.F) {
	bw := newBlockWriter(2)
	for i := 0; i < 5; i++ {
		bw.add(base.MakeInternalKey(nil, fmt.Appendf(nil, "key%d", i), 1, base.KindSet), []byte("value"))
	}
	f.Add(append([]byte(nil), bw.finish()...), base.MakeSeekKey(nil, []byte("key2"), 5))
	f.Add([]byte{0, 0, 0, 0}, []byte("k"))
	f.Add([]byte{1, 2, 3}, []byte{})
	var p Properties
	p.NumEntries = 3
	f.Add(append([]byte(nil), p.encode(newBlockWriter(1))...), []byte("ringkv.num-entries"))

	f.Fuzz(func(t *testing.T, block, target []byte) {
		it, err := NewBlockIter(block)
		if err != nil {
			if !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error not corruption: %v", err)
			}
		} else {
			n := 0
			for ok := it.First(); ok; ok = it.Next() {
				n++
				if n > len(block) {
					t.Fatalf("more entries than bytes")
				}
				_, _ = it.Key(), it.Value()
			}
			if err := it.Error(); err != nil && !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error not corruption: %v", err)
			}
			it2, _ := NewBlockIter(block)
			if it2.SeekGE(target) {
				if len(it2.Key()) < base.TrailerLen {
					t.Fatalf("SeekGE returned invalid key %q", it2.Key())
				}
				for n := 0; it2.Next() && n < len(block); n++ {
				}
			}
			if err := it2.Error(); err != nil && !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error not corruption: %v", err)
			}
		}
		_, _ = DecodeProperties(block)
		if x, err := DecodeIndex(block, 1<<40); err == nil {
			_ = x.Search(target)
		}
		_, _ = UnwrapBlock(block)
		_, _ = DecodeHandle(block)
		if len(block) >= FooterLen {
			_, _ = DecodeFooter(block[len(block)-FooterLen:])
		}
	})
}

// wrapRaw appends block with a valid trailer (uncompressed) and returns its
// handle.
func wrapRaw(dst, block []byte) ([]byte, BlockHandle) {
	h := BlockHandle{Offset: uint64(len(dst)), Length: uint64(len(block))}
	dst = append(dst, block...)
	dst = append(dst, blockTypeNone)
	dst = binary.LittleEndian.AppendUint32(dst, blockChecksum(block, blockTypeNone))
	return dst, h
}

// exerciseTable opens file and reads all of it: no panic, and every error
// must be corruption.
func exerciseTable(t *testing.T, file []byte) {
	check := func(err error) {
		if err != nil && !errors.Is(err, base.ErrCorruption) {
			t.Fatalf("error not corruption: %v", err)
		}
	}
	r, err := Open(&memFile{data: file}, int64(len(file)), ReaderOptions{Cache: cache.New(1 << 20), FileNum: 1})
	if err != nil {
		check(err)
		return
	}
	it := r.NewIter()
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		if !base.Valid(it.Key()) {
			t.Fatalf("iterator returned invalid key %q", it.Key())
		}
		if len(keys) < 50 {
			keys = append(keys, append([]byte(nil), it.Key()...))
		}
	}
	check(it.Close())
	for _, k := range keys {
		_, _, _, err := r.Get(base.UserKey(k), base.Seq(k))
		check(err)
		it := r.NewCompactionIter()
		it.SeekGE(k)
		check(it.Close())
	}
	_, _, _, err = r.Get([]byte("key"), base.SeqNumMax)
	check(err)
	check(r.Close())
}

// FuzzFooterIndex opens arbitrary files. To get past the checksums, it also
// opens a synthetic table whose data block, index block and properties
// block are the fuzzer's bytes, wrapped with valid trailers and footer.
func FuzzFooterIndex(f *testing.F) {
	rng := rand.New(rand.NewSource(1))
	for _, n := range []int{0, 1, 5, 40} {
		es := randEntries(rng, n, 2, 10)
		for _, o := range []WriterOptions{{BlockSize: 64}, {Compression: NoCompression, BloomBitsPerKey: -1}} {
			mf := &memFile{}
			w := NewWriter(mf, o)
			for _, e := range es {
				if err := w.Add(e.key, e.value); err != nil {
					f.Fatal(err)
				}
			}
			if _, err := w.Finish(); err != nil {
				f.Fatal(err)
			}
			// Seed the synthetic part with the table's own first data
			// block and index block.
			r, err := Open(mf, int64(len(mf.data)), ReaderOptions{})
			if err != nil {
				f.Fatal(err)
			}
			var data, idx []byte
			if r.Index().Len() > 0 {
				data, _ = r.dataBlock(r.Index().Handle(0), false)
				bw := newBlockWriter(1)
				bw.add(r.Index().Separator(0), appendHandle(nil, BlockHandle{0, uint64(len(data))}))
				idx = bw.finish()
			}
			f.Add(mf.data, data, idx, []byte(nil))
		}
	}
	f.Add([]byte("short"), []byte{}, []byte{}, []byte{})

	f.Fuzz(func(t *testing.T, file, data, index, props []byte) {
		exerciseTable(t, file)

		var ft Footer
		ft.Version = FormatVersion
		var syn []byte
		syn, _ = wrapRaw(syn, data)
		syn, ft.Index = wrapRaw(syn, index)
		if len(props) == 0 {
			props = (&Properties{}).encode(newBlockWriter(1))
		}
		syn, ft.Properties = wrapRaw(syn, props)
		syn = append(syn, ft.encode()...)
		exerciseTable(t, syn)
	})
}
