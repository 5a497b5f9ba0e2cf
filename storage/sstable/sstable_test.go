package sstable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"sort"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/cache"
)

// memFile is a minimal in-memory vfs.File.
type memFile struct {
	data   []byte
	off    int
	writes int
	syncs  int
	closed bool
}

func (f *memFile) Read(p []byte) (int, error) {
	if f.off >= len(f.data) {
		return 0, io.EOF
	}
	n := copy(p, f.data[f.off:])
	f.off += n
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.writes++
	f.data = append(f.data, p...)
	return len(p), nil
}

func (f *memFile) Close() error {
	if f.closed {
		return errors.New("closed twice")
	}
	f.closed = true
	return nil
}
func (f *memFile) Sync() error          { f.syncs++; return nil }
func (f *memFile) Size() (int64, error) { return int64(len(f.data)), nil }

type entry struct {
	key, value []byte
}

// randEntries returns sorted entries: nUser user keys (sharing prefixes),
// each with 1..maxVersions versions of random kinds and distinct seqnums.
func randEntries(rng *rand.Rand, nUser, maxVersions, maxValue int) []entry {
	seen := map[string]bool{}
	var es []entry
	for len(seen) < nUser {
		var uk []byte
		switch rng.Intn(3) {
		case 0:
			uk = fmt.Appendf(nil, "user%08d", rng.Intn(nUser*10))
		case 1:
			uk = make([]byte, 1+rng.Intn(24))
			for i := range uk {
				uk[i] = byte(rng.Intn(4)) * 0x55 // includes 0x00 and 0xff
			}
		default:
			uk = fmt.Appendf(nil, "k%d", rng.Intn(nUser*10))
		}
		if seen[string(uk)] {
			continue
		}
		seen[string(uk)] = true
		nv := 1 + rng.Intn(maxVersions)
		seqs := map[uint64]bool{}
		for len(seqs) < nv {
			seqs[uint64(1+rng.Intn(1000))] = true
		}
		for s := range seqs {
			kind := base.KindSet
			if rng.Intn(5) == 0 {
				kind = base.KindDelete
			}
			var v []byte
			if kind == base.KindSet {
				v = make([]byte, rng.Intn(maxValue+1))
				for i := range v {
					v[i] = byte('a' + rng.Intn(3)) // compressible
				}
			}
			es = append(es, entry{base.MakeInternalKey(nil, uk, base.SeqNum(s), kind), v})
		}
	}
	sort.Slice(es, func(i, j int) bool { return base.Compare(es[i].key, es[j].key) < 0 })
	return es
}

func buildTable(t testing.TB, es []entry, o WriterOptions) (*memFile, Meta) {
	t.Helper()
	f := &memFile{}
	w := NewWriter(f, o)
	for _, e := range es {
		if err := w.Add(e.key, e.value); err != nil {
			t.Fatalf("Add(%s): %v", base.Format(e.key), err)
		}
	}
	m, err := w.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if m.Size != uint64(len(f.data)) {
		t.Fatalf("Meta.Size = %d, file is %d bytes", m.Size, len(f.data))
	}
	if f.syncs != 1 {
		t.Fatalf("file synced %d times, want 1", f.syncs)
	}
	if f.closed {
		t.Fatalf("Finish closed the file")
	}
	return f, m
}

func openTable(t testing.TB, f *memFile, o ReaderOptions) *Reader {
	t.Helper()
	r, err := Open(f, int64(len(f.data)), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// modelGet is the reference for Reader.Get.
func modelGet(es []entry, uk []byte, seq base.SeqNum) (entry, bool) {
	target := base.MakeSeekKey(nil, uk, seq)
	i := sort.Search(len(es), func(i int) bool { return base.Compare(es[i].key, target) >= 0 })
	if i < len(es) && bytes.Equal(base.UserKey(es[i].key), uk) {
		return es[i], true
	}
	return entry{}, false
}

func checkIter(t *testing.T, it base.InternalIterator, es []entry) {
	t.Helper()
	i := 0
	for ok := it.First(); ok; ok = it.Next() {
		if i >= len(es) {
			t.Fatalf("iterator has extra key %s", base.Format(it.Key()))
		}
		if !bytes.Equal(it.Key(), es[i].key) || !bytes.Equal(it.Value(), es[i].value) {
			t.Fatalf("entry %d: got %s=%q, want %s=%q", i, base.Format(it.Key()), it.Value(), base.Format(es[i].key), es[i].value)
		}
		i++
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if i != len(es) {
		t.Fatalf("iterator stopped after %d of %d entries", i, len(es))
	}
}

func checkGets(t *testing.T, rng *rand.Rand, r *Reader, es []entry, n int) {
	t.Helper()
	for j := 0; j < n; j++ {
		var uk []byte
		if len(es) > 0 && rng.Intn(4) != 0 {
			uk = base.UserKey(es[rng.Intn(len(es))].key)
		} else {
			uk = fmt.Appendf(nil, "user%08d", rng.Intn(100000))
		}
		seq := base.SeqNum(rng.Intn(1100))
		if rng.Intn(10) == 0 {
			seq = base.SeqNumMax
		}
		want, wantOK := modelGet(es, uk, seq)
		v, kind, ok, err := r.Get(uk, seq)
		if err != nil {
			t.Fatalf("Get(%q, %d): %v", uk, seq, err)
		}
		if ok != wantOK {
			t.Fatalf("Get(%q, %d): found=%v, want %v", uk, seq, ok, wantOK)
		}
		if ok && (kind != base.KindOf(want.key) || !bytes.Equal(v, want.value)) {
			t.Fatalf("Get(%q, %d) = %s %q, want %s", uk, seq, kind, v, base.Format(want.key))
		}
	}
}

func checkSeeks(t *testing.T, rng *rand.Rand, r *Reader, es []entry) {
	t.Helper()
	it := r.NewIter()
	defer it.Close()
	targets := make([][]byte, 0, 2*len(es)+10)
	for _, e := range es {
		targets = append(targets, e.key)
		// A key just after e.key: same user key, smaller trailer, or a
		// longer user key.
		uk := base.UserKey(e.key)
		targets = append(targets, base.MakeInternalKey(nil, uk, base.Seq(e.key)-1, base.KindSet))
		targets = append(targets, base.MakeSeekKey(nil, append(append([]byte(nil), uk...), 0), base.SeqNum(rng.Intn(1000))))
	}
	targets = append(targets, base.MakeSeekKey(nil, nil, base.SeqNumMax), base.MakeSeekKey(nil, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0), []byte("short"))
	for _, tg := range targets {
		var i int
		if base.Valid(tg) {
			i = sort.Search(len(es), func(i int) bool { return base.Compare(es[i].key, tg) >= 0 })
		} else {
			i = sort.Search(len(es), func(i int) bool { return bytes.Compare(base.UserKey(es[i].key), tg) >= 0 })
		}
		ok := it.SeekGE(tg)
		if ok != (i < len(es)) {
			t.Fatalf("SeekGE(%q) = %v, want %v (err %v)", tg, ok, i < len(es), it.Error())
		}
		if !ok {
			continue
		}
		// Check the position and a couple of Nexts.
		for j := i; j < len(es) && j < i+3; j++ {
			if !it.Valid() || !bytes.Equal(it.Key(), es[j].key) || !bytes.Equal(it.Value(), es[j].value) {
				t.Fatalf("after SeekGE(%s), entry %d: got %s, want %s", base.Format(tg), j-i, base.Format(it.Key()), base.Format(es[j].key))
			}
			it.Next()
		}
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	es := randEntries(rng, 250, 4, 300)
	for _, bs := range []int{1, 100, 4096, 64 << 10} {
		for _, ri := range []int{1, 3, 16} {
			for _, comp := range []uint8{SnappyCompression, NoCompression} {
				for _, bits := range []int{-1, 0} {
					o := WriterOptions{BlockSize: bs, RestartInterval: ri, Compression: comp, BloomBitsPerKey: bits}
					t.Run(fmt.Sprintf("bs=%d/ri=%d/comp=%d/bits=%d", bs, ri, comp, bits), func(t *testing.T) {
						f, m := buildTable(t, es, o)
						c := cache.New(1 << 20)
						r := openTable(t, f, ReaderOptions{Cache: c, FileNum: 7})
						defer func() {
							if err := r.Close(); err != nil {
								t.Fatal(err)
							}
						}()
						checkIter(t, r.NewIter(), es)
						checkIter(t, r.NewCompactionIter(), es)
						checkGets(t, rng, r, es, 500)
						checkSeeks(t, rng, r, es)

						var dels uint64
						minSeq, maxSeq := base.SeqNumMax, base.SeqNum(0)
						var rawK, rawV uint64
						for _, e := range es {
							if base.KindOf(e.key) == base.KindDelete {
								dels++
							}
							minSeq = min(minSeq, base.Seq(e.key))
							maxSeq = max(maxSeq, base.Seq(e.key))
							rawK += uint64(len(e.key))
							rawV += uint64(len(e.value))
						}
						wantMeta := Meta{Size: uint64(len(f.data)), Smallest: es[0].key, Largest: es[len(es)-1].key,
							SmallestSeq: minSeq, LargestSeq: maxSeq, NumEntries: uint64(len(es)), NumDeletions: dels}
						if fmt.Sprint(m) != fmt.Sprint(wantMeta) {
							t.Fatalf("Meta = %+v, want %+v", m, wantMeta)
						}
						p := r.Props()
						if p.NumEntries != uint64(len(es)) || p.NumDeletions != dels || p.SmallestSeq != minSeq ||
							p.LargestSeq != maxSeq || p.RawKeySize != rawK || p.RawValueSize != rawV ||
							p.NumDataBlocks != uint64(r.Index().Len()) {
							t.Fatalf("Props = %v", p)
						}
						if (r.Filter() != nil) != (bits >= 0) {
							t.Fatalf("filter present = %v with BloomBitsPerKey %d", r.Filter() != nil, bits)
						}
						if bs == 1 && r.Index().Len() != len(es) {
							t.Fatalf("BlockSize 1: %d blocks for %d entries", r.Index().Len(), len(es))
						}
					})
				}
			}
		}
	}
}

func TestEmptyTable(t *testing.T) {
	f, m := buildTable(t, nil, WriterOptions{})
	if m.NumEntries != 0 || m.Smallest != nil || m.Largest != nil {
		t.Fatalf("Meta = %+v", m)
	}
	r := openTable(t, f, ReaderOptions{})
	defer r.Close()
	if _, _, ok, err := r.Get([]byte("a"), base.SeqNumMax); ok || err != nil {
		t.Fatalf("Get on empty table: %v %v", ok, err)
	}
	it := r.NewIter()
	if it.First() || it.SeekGE(base.MakeSeekKey(nil, nil, base.SeqNumMax)) || it.Close() != nil {
		t.Fatal("iterator over empty table")
	}
}

func TestLargeValues(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	var es []entry
	for i := 0; i < 50; i++ {
		v := make([]byte, rng.Intn(20000))
		rng.Read(v)
		es = append(es, entry{base.MakeInternalKey(nil, fmt.Appendf(nil, "key%03d", i), 5, base.KindSet), v})
	}
	f, _ := buildTable(t, es, WriterOptions{BlockSize: 1024})
	r := openTable(t, f, ReaderOptions{})
	defer r.Close()
	checkIter(t, r.NewIter(), es)
	checkGets(t, rng, r, es, 200)
}

func TestWriterErrors(t *testing.T) {
	k := func(s string, seq base.SeqNum) []byte { return base.MakeInternalKey(nil, []byte(s), seq, base.KindSet) }
	w := NewWriter(&memFile{}, WriterOptions{})
	if err := w.Add(k("b", 5), nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{k("b", 5), k("b", 6), k("a", 1), []byte("short"), base.MakeInternalKey(nil, []byte("c"), 1, 7)} {
		if err := w.Add(bad, nil); err == nil {
			t.Fatalf("Add(%q) after b#5 succeeded", bad)
		}
	}
	if err := w.Add(k("b", 4), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(k("c", 1), nil); err == nil {
		t.Fatal("Add after Finish succeeded")
	}
	if _, err := w.Finish(); err == nil {
		t.Fatal("second Finish succeeded")
	}
	if err := NewWriter(&memFile{}, WriterOptions{Compression: 9}).Add(k("a", 1), nil); err == nil {
		t.Fatal("unknown compression accepted")
	}
}

func TestWriterBuffersWrites(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	es := randEntries(rng, 5000, 2, 100)
	f, m := buildTable(t, es, WriterOptions{BlockSize: 512})
	if max := int(m.Size/(writeBufferSize/2)) + 2; f.writes > max {
		t.Fatalf("%d writes for %d bytes", f.writes, m.Size)
	}
}

func TestSeparator(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	alphabet := []byte{0, 1, 2, 0x7f, 0xfe, 0xff}
	rk := func() []byte {
		b := make([]byte, rng.Intn(6))
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return base.MakeInternalKey(nil, b, base.SeqNum(rng.Intn(4)), base.KindSet)
	}
	for i := 0; i < 100000; i++ {
		a, b := rk(), rk()
		switch c := base.Compare(a, b); {
		case c == 0:
			continue
		case c > 0:
			a, b = b, a
		}
		s := separator(nil, a, b)
		if base.Compare(a, s) > 0 || base.Compare(s, b) >= 0 || len(s) > len(a) {
			t.Fatalf("separator(%s, %s) = %s", base.Format(a), base.Format(b), base.Format(s))
		}
		s = successor(nil, a)
		if base.Compare(a, s) > 0 || len(s) > len(a) {
			t.Fatalf("successor(%s) = %s", base.Format(a), base.Format(s))
		}
	}
	a := base.MakeInternalKey(nil, []byte("abcdefgh"), 1, base.KindSet)
	b := base.MakeInternalKey(nil, []byte("abzz"), 1, base.KindSet)
	if s := separator(nil, a, b); string(base.UserKey(s)) != "abd" {
		t.Fatalf("separator = %s, want abd", base.Format(s))
	}
}

func TestCacheUse(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	es := randEntries(rng, 2000, 2, 50)
	f, _ := buildTable(t, es, WriterOptions{})
	c := cache.New(64 << 20)
	r := openTable(t, f, ReaderOptions{Cache: c, FileNum: 3})
	defer r.Close()

	// A compaction scan leaves the cache empty.
	checkIter(t, r.NewCompactionIter(), es)
	before := c.Metrics()
	checkIter(t, r.NewCompactionIter(), es)
	if after := c.Metrics(); fmt.Sprint(after) == fmt.Sprint(before) {
		t.Logf("metrics unchanged: %+v", after)
	}
	uk := base.UserKey(es[len(es)/2].key)
	if _, ok := c.Get(3, r.Index().Handle(r.index.search(uk, maxTrailer)).Offset); ok {
		t.Fatal("compaction iterator filled the cache")
	}
	// Get fills it; a second Get is a hit and allocates nothing.
	if _, _, ok, err := r.Get(uk, base.SeqNumMax); !ok || err != nil {
		t.Fatalf("Get: %v %v", ok, err)
	}
	if _, ok := c.Get(3, r.Index().Handle(r.index.search(uk, maxTrailer)).Offset); !ok {
		t.Fatal("Get did not fill the cache")
	}
	// Truncating the file now proves the next Gets are served from cache.
	saved := f.data
	f.data = nil
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, ok, err := r.Get(uk, base.SeqNumMax); !ok || err != nil {
			t.Fatalf("cached Get: %v %v", ok, err)
		}
	})
	f.data = saved
	switch {
	case raceEnabled:
		t.Logf("cached Get allocates %.1f times; not checked under the race detector, whose sync.Pool drops items on purpose", allocs)
	case allocs > 0:
		t.Errorf("cached Get allocates %.1f times", allocs)
	}
}

// checkAgainstModel reads everything from a possibly damaged table and
// fails on a panic-free wrong answer. It returns whether a corruption error
// was seen. Any error that is not corruption fails the test.
//
// To keep the test fast, it Gets every stride-th entry starting at
// start % stride (stride <= 1: every entry).
func checkAgainstModel(t *testing.T, f *memFile, size int64, es []entry, start, stride int, desc string) (detected bool) {
	t.Helper()
	check := func(err error) {
		t.Helper()
		if err == nil {
			return
		}
		if !errors.Is(err, base.ErrCorruption) {
			t.Fatalf("%s: error does not wrap ErrCorruption: %v", desc, err)
		}
		// The engine quarantines the table an error names.
		if num, ok := CorruptTable(err); !ok || num != 77 {
			t.Fatalf("%s: CorruptTable = %d, %v; want table 77: %v", desc, num, ok, err)
		}
		detected = true
	}
	r, err := Open(f, size, ReaderOptions{FileNum: 77})
	if err != nil {
		check(err)
		return detected
	}
	// Full scan.
	it := r.NewIter()
	i := 0
	for ok := it.First(); ok; ok = it.Next() {
		if i >= len(es) || !bytes.Equal(it.Key(), es[i].key) || !bytes.Equal(it.Value(), es[i].value) {
			t.Fatalf("%s: wrong entry %d from damaged table: %s=%q", desc, i, base.Format(it.Key()), it.Value())
		}
		i++
	}
	check(it.Close())
	if it.Error() == nil && i != len(es) {
		t.Fatalf("%s: damaged table silently lost entries (%d of %d)", desc, i, len(es))
	}
	// Point reads of the entries (newest visible at its own seqnum).
	stride = max(stride, 1)
	for j := start % stride; j < len(es); j += stride {
		e := es[j]
		v, kind, ok, err := r.Get(base.UserKey(e.key), base.Seq(e.key))
		if err != nil {
			check(err)
			continue
		}
		if !ok {
			// Only a damaged filter may hide a key... but the filter
			// is checksummed, so this is a wrong answer.
			t.Fatalf("%s: Get(%s) not found in damaged table", desc, base.Format(e.key))
		}
		if kind != base.KindOf(e.key) || !bytes.Equal(v, e.value) {
			t.Fatalf("%s: Get(%s) = %s %q", desc, base.Format(e.key), kind, v)
		}
	}
	return detected
}

func TestCorruption(t *testing.T) {
	rng := rand.New(rand.NewSource(6))
	es := randEntries(rng, 40, 3, 30)
	for _, comp := range []uint8{SnappyCompression, NoCompression} {
		f, _ := buildTable(t, es, WriterOptions{BlockSize: 256, RestartInterval: 4, Compression: comp})
		orig := f.data
		t.Logf("comp %d: %d entries, %d bytes", comp, len(es), len(orig))
		undetected := 0
		for off := 0; off < len(orig); off++ {
			for _, mask := range []byte{0x01, 0x80} {
				if off%7 != 0 && mask == 0x80 {
					continue
				}
				d := bytes.Clone(orig)
				d[off] ^= mask
				if !checkAgainstModel(t, &memFile{data: d}, int64(len(d)), es, off, 3, fmt.Sprintf("comp %d, byte %d ^ %#x", comp, off, mask)) {
					undetected++
				}
			}
		}
		// Every byte of a table is covered by a checksum or the magic:
		// no flip may go unnoticed.
		if undetected > 0 {
			t.Errorf("comp %d: %d byte flips were not detected", comp, undetected)
		}
		// Garbage overwrites of whole regions.
		for i := 0; i < 100; i++ {
			d := bytes.Clone(orig)
			off := rng.Intn(len(d))
			n := 1 + rng.Intn(64)
			for j := off; j < off+n && j < len(d); j++ {
				d[j] = byte(rng.Intn(256))
			}
			checkAgainstModel(t, &memFile{data: d}, int64(len(d)), es, 0, 1, fmt.Sprintf("garbage at %d+%d", off, n))
		}
	}
}

func TestTruncated(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	es := randEntries(rng, 100, 2, 20)
	f, _ := buildTable(t, es, WriterOptions{BlockSize: 128})
	if ft, err := ReadFooter(f, int64(len(f.data)), 12); err != nil || ft != openTable(t, f, ReaderOptions{}).Footer() {
		t.Fatalf("ReadFooter of the whole table = %+v, %v", ft, err)
	}
	for n := 0; n < len(f.data); n++ {
		// The file really is shorter...
		short := &memFile{data: f.data[:n]}
		_, err := Open(short, int64(n), ReaderOptions{})
		if !errors.Is(err, base.ErrCorruption) {
			t.Fatalf("Open of %d-byte prefix: %v", n, err)
		}
		_, err = ReadFooter(short, int64(n), 12)
		if num, ok := CorruptTable(err); !errors.Is(err, base.ErrCorruption) || !ok || num != 12 {
			t.Fatalf("ReadFooter of %d-byte prefix: %v (table %d, %v)", n, err, num, ok)
		}
		// ...or the caller believes it is longer than it is.
		if n%7 == 0 {
			r, err := Open(short, int64(len(f.data)), ReaderOptions{})
			if !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("Open of %d-byte prefix claiming full size: %v %v", n, r, err)
			}
		}
	}
}

func TestOpenErrorMessages(t *testing.T) {
	es := randEntries(rand.New(rand.NewSource(8)), 10, 1, 10)
	f, _ := buildTable(t, es, WriterOptions{})
	n := len(f.data)
	cases := []struct {
		mutate func(d []byte) []byte
		want   string
	}{
		{func(d []byte) []byte { return d[:10] }, "shorter than the 64-byte footer"},
		{func(d []byte) []byte { d[n-1] ^= 1; return d }, "bad magic"},
		{func(d []byte) []byte { d[n-16] = 9; return d }, "unknown format version 9"},
		{func(d []byte) []byte { d[n-64] ^= 1; return d }, "footer checksum mismatch"},
		{func(d []byte) []byte {
			binary.LittleEndian.PutUint64(d[n-64+24:], 1<<40) // index length
			binary.LittleEndian.PutUint32(d[n-12:], crcOf(d[n-64:n-12]))
			return d
		}, "index handle"},
		{func(d []byte) []byte { d[0] ^= 1; return d }, ""},
	}
	for i, c := range cases {
		d := c.mutate(bytes.Clone(f.data))
		r, err := Open(&memFile{data: d}, int64(len(d)), ReaderOptions{FileNum: 42})
		if c.want == "" {
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			_, _, _, err = r.Get(base.UserKey(es[0].key), base.SeqNumMax)
			if !errors.Is(err, base.ErrCorruption) || !bytes.Contains([]byte(err.Error()), []byte("checksum mismatch")) {
				t.Fatalf("case %d: Get on damaged block: %v", i, err)
			}
			t.Logf("case %d: %v", i, err)
			continue
		}
		if !errors.Is(err, base.ErrCorruption) || !bytes.Contains([]byte(err.Error()), []byte(c.want)) ||
			!bytes.Contains([]byte(err.Error()), []byte("table 42")) {
			t.Fatalf("case %d: error %v, want corruption mentioning %q", i, err, c.want)
		}
		t.Logf("case %d: %v", i, err)
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

func TestBlockIterBasics(t *testing.T) {
	bw := newBlockWriter(3)
	var keys [][]byte
	for i := 0; i < 20; i++ {
		k := base.MakeInternalKey(nil, fmt.Appendf(nil, "key%02d", i*2), 1, base.KindSet)
		keys = append(keys, k)
		bw.add(k, fmt.Appendf(nil, "v%d", i))
	}
	it, err := NewBlockIter(bw.finish())
	if err != nil {
		t.Fatal(err)
	}
	for i := -1; i < 41; i++ {
		tg := base.MakeSeekKey(nil, fmt.Appendf(nil, "key%02d", i), base.SeqNumMax)
		want := (i + 1) / 2
		if i < 0 {
			want = 0
		}
		ok := it.SeekGE(tg)
		if ok != (want < 20) || (ok && !bytes.Equal(it.Key(), keys[want])) {
			t.Fatalf("SeekGE(key%02d): %v %s", i, ok, base.Format(it.Key()))
		}
	}
	// Empty block.
	it, err = NewBlockIter([]byte{0, 0, 0, 0})
	if err != nil || it.First() || it.SeekGE(keys[0]) {
		t.Fatalf("empty block: %v", err)
	}
}

func TestConcurrentReads(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	es := randEntries(rng, 300, 3, 50)
	f, _ := buildTable(t, es, WriterOptions{BlockSize: 256})
	r := openTable(t, f, ReaderOptions{Cache: cache.New(8 << 10), FileNum: 1})
	defer r.Close()
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 300; i++ {
				e := es[rng.Intn(len(es))]
				v, kind, ok, err := r.Get(base.UserKey(e.key), base.Seq(e.key))
				if err != nil || !ok || kind != base.KindOf(e.key) || !bytes.Equal(v, e.value) {
					done <- fmt.Errorf("Get(%s) = %q %v %v %v", base.Format(e.key), v, kind, ok, err)
					return
				}
				if i%50 == 0 {
					it := r.NewIter()
					n := 0
					for ok := it.First(); ok; ok = it.Next() {
						n++
					}
					if err := it.Close(); err != nil || n != len(es) {
						done <- fmt.Errorf("scan: %d entries, %v", n, err)
						return
					}
				}
			}
			done <- nil
		}(g)
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
