package sstable

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/bloom"
	"github.com/ringkv/ringkv/storage/cache"
	"github.com/ringkv/ringkv/storage/vfs"
)

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	// Cache, if not nil, holds uncompressed, verified data blocks keyed by
	// (FileNum, block offset). It may be shared by many Readers; FileNum
	// must then be unique per table. The engine should call
	// Cache.EvictFile(FileNum) when the table is deleted; Close does not.
	Cache   *cache.Cache
	FileNum uint64
	// VerifyChecksums is accepted for symmetry with other engines but has
	// no effect: every block read from the file has its checksum verified
	// before it is used or cached, always.
	VerifyChecksums bool
}

// Reader reads a table. Its methods are safe for concurrent use, except
// Close, which must come after every other call (and after every iterator
// is closed).
type Reader struct {
	f       vfs.File
	size    int64
	fileNum uint64
	cache   *cache.Cache
	footer  Footer
	dataEnd uint64 // data blocks lie in [0, dataEnd)
	filter  []byte
	index   *Index
	props   Properties

	getPool sync.Pool // of *BlockIter
}

// Open opens the table in f, whose size is size: it reads and verifies the
// footer, index, filter and properties, which stay in memory. On success the
// Reader owns f and closes it in Close; on error f is left open. Errors about
// the file's contents wrap base.ErrCorruption.
func Open(f vfs.File, size int64, o ReaderOptions) (*Reader, error) {
	r := &Reader{f: f, size: size, fileNum: o.FileNum, cache: o.Cache}
	ft, err := r.readFooter()
	if err != nil {
		return nil, err
	}
	r.footer = ft
	// The data blocks end where the first meta block begins.
	r.dataEnd = ft.Index.Offset
	if ft.Filter.Length > 0 || ft.Filter.Offset > 0 {
		r.dataEnd = min(r.dataEnd, ft.Filter.Offset)
	}

	idx, err := r.readMetaBlock("index", ft.Index)
	if err != nil {
		return nil, err
	}
	if r.index, err = DecodeIndex(idx, r.dataEnd); err != nil {
		return nil, r.wrapf(err, "index block at offset %d", ft.Index.Offset)
	}
	pb, err := r.readMetaBlock("properties", ft.Properties)
	if err != nil {
		return nil, err
	}
	if r.props, err = DecodeProperties(pb); err != nil {
		return nil, r.wrapf(err, "properties block at offset %d", ft.Properties.Offset)
	}
	if ft.Filter.Length > 0 {
		if r.filter, err = r.readMetaBlock("filter", ft.Filter); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ReadFooter reads and checks the footer of the table in f, whose size is
// size, without reading anything else: a cheap check that the file ends as a
// table does and that its handles lie inside it. fileNum names the table in
// errors; errors about the contents wrap base.ErrCorruption (and name the
// table for CorruptTable). f stays open.
func ReadFooter(f vfs.File, size int64, fileNum uint64) (Footer, error) {
	r := &Reader{f: f, size: size, fileNum: fileNum}
	return r.readFooter()
}

func (r *Reader) readFooter() (Footer, error) {
	size := r.size
	if size < FooterLen {
		return Footer{}, r.corruptf("file is %d bytes, shorter than the %d-byte footer", size, FooterLen)
	}
	buf := make([]byte, FooterLen)
	if err := r.readAt(buf, size-FooterLen); err != nil {
		return Footer{}, err
	}
	ft, err := DecodeFooter(buf)
	if err != nil {
		return Footer{}, r.wrapf(err, "footer at offset %d", size-FooterLen)
	}
	metaEnd := uint64(size - FooterLen)
	check := func(name string, h BlockHandle) error {
		if end, ok := h.end(); !ok || end > metaEnd {
			return r.corruptf("%s handle %v (footer at offset %d) lies outside the %d bytes before the footer", name, h, size-FooterLen, metaEnd)
		}
		return nil
	}
	if err := check("index", ft.Index); err != nil {
		return Footer{}, err
	}
	if err := check("properties", ft.Properties); err != nil {
		return Footer{}, err
	}
	if ft.Filter.Length > 0 || ft.Filter.Offset > 0 {
		if err := check("filter", ft.Filter); err != nil {
			return Footer{}, err
		}
	}
	return ft, nil
}

func (r *Reader) corruptf(format string, args ...any) error {
	return r.named(corruptf("sstable: table %d: %s", r.fileNum, fmt.Sprintf(format, args...)))
}

// named marks a corruption error as this table's (see CorruptTable).
func (r *Reader) named(err error) error {
	ce := err.(*corruptError)
	ce.table, ce.hasTable = r.fileNum, true
	return ce
}

// wrapf adds the table and a context to an error from a decoder.
func (r *Reader) wrapf(err error, format string, args ...any) error {
	var ce *corruptError
	if errors.As(err, &ce) {
		return r.named(corruptf("sstable: table %d: %s: %s", r.fileNum, fmt.Sprintf(format, args...), strings.TrimPrefix(ce.msg, "sstable: ")))
	}
	return fmt.Errorf("sstable: table %d: %s: %w", r.fileNum, fmt.Sprintf(format, args...), err)
}

func (r *Reader) readAt(buf []byte, off int64) error {
	n, err := r.f.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return r.corruptf("short read of %d bytes at offset %d: got %d (file truncated?)", len(buf), off, n)
	}
	return fmt.Errorf("sstable: table %d: reading %d bytes at offset %d: %w", r.fileNum, len(buf), off, err)
}

// readRaw reads a block and checks and decompresses it.
func (r *Reader) readRaw(what string, h BlockHandle) ([]byte, error) {
	raw := make([]byte, h.Length+BlockTrailerLen)
	if err := r.readAt(raw, int64(h.Offset)); err != nil {
		return nil, err
	}
	b, err := unwrapBlock(raw, nil)
	if err != nil {
		return nil, r.wrapf(err, "%s %v", what, h)
	}
	return b, nil
}

func (r *Reader) readMetaBlock(what string, h BlockHandle) ([]byte, error) {
	return r.readRaw(what+" block", h)
}

// dataBlock returns the uncompressed data block at h, from the cache if
// there, else from the file (verified, then cached if fill).
func (r *Reader) dataBlock(h BlockHandle, fill bool) ([]byte, error) {
	if r.cache != nil {
		if b, ok := r.cache.Get(r.fileNum, h.Offset); ok {
			return b, nil
		}
	}
	b, err := r.readRaw("data block", h)
	if err != nil {
		return nil, err
	}
	if fill && r.cache != nil {
		r.cache.Set(r.fileNum, h.Offset, b)
	}
	return b, nil
}

// Props returns the table's properties.
func (r *Reader) Props() Properties { return r.props }

// Footer returns the table's decoded footer.
func (r *Reader) Footer() Footer { return r.footer }

// Close closes the file. The Reader and its iterators must not be used
// afterwards.
func (r *Reader) Close() error {
	if r.f == nil {
		return errors.New("sstable: reader already closed")
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// Get returns the newest entry for userKey with seqnum <= seq: its value
// and kind (KindSet or KindDelete) and found = true, or found = false if the
// table has no such entry. It consults the bloom filter first.
//
// The returned value aliases a block that may be shared through the block
// cache: it is immutable and stays valid, but the caller must not modify it.
func (r *Reader) Get(userKey []byte, seq base.SeqNum) (value []byte, kind base.Kind, found bool, err error) {
	if r.filter != nil && !bloom.MayContain(r.filter, bloom.Hash(userKey)) {
		return nil, 0, false, nil
	}
	trailer := base.MakeTrailer(min(seq, base.SeqNumMax), base.KindMax)
	i := r.index.search(userKey, trailer)
	if i >= r.index.Len() {
		return nil, 0, false, nil
	}
	it, _ := r.getPool.Get().(*BlockIter)
	if it == nil {
		it = &BlockIter{}
	}
	value, kind, found, err = r.get(it, i, userKey, trailer)
	it.data, it.key, it.val = nil, nil, nil
	r.getPool.Put(it)
	return value, kind, found, err
}

func (r *Reader) get(it *BlockIter, i int, userKey []byte, trailer uint64) ([]byte, base.Kind, bool, error) {
	// Block i holds the first key >= the target, unless its separator is
	// larger than its last key: then it is the first key of a later block.
	for ; i < r.index.Len(); i++ {
		h := r.index.handles[i]
		b, err := r.dataBlock(h, true)
		if err != nil {
			return nil, 0, false, err
		}
		if err := it.Init(b); err != nil {
			return nil, 0, false, r.wrapf(err, "data %v", h)
		}
		ok := it.seekGE(userKey, trailer)
		if !ok {
			if err := it.Error(); err != nil {
				return nil, 0, false, r.wrapf(err, "data %v", h)
			}
			continue
		}
		k := it.Key()
		if !bytes.Equal(base.UserKey(k), userKey) {
			return nil, 0, false, nil
		}
		kind := base.KindOf(k)
		if kind != base.KindSet && kind != base.KindDelete {
			return nil, 0, false, r.corruptf("key %s in data %v has unknown kind", base.Format(k), h)
		}
		return it.Value(), kind, true, nil
	}
	return nil, 0, false, nil
}

// Index is a decoded index block: for each data block, in order, its
// separator key and handle.
type Index struct {
	keys    []byte   // the separators, concatenated
	ends    []uint32 // ends[i] is the end of separator i in keys
	handles []BlockHandle
}

// DecodeIndex decodes an uncompressed index block whose data blocks must lie
// in [0, dataEnd), in order and without overlapping. Separators must be
// valid internal keys. Errors wrap base.ErrCorruption.
func DecodeIndex(block []byte, dataEnd uint64) (*Index, error) {
	it, err := NewBlockIter(block)
	if err != nil {
		return nil, err
	}
	x := &Index{}
	var prevEnd uint64
	for ok := it.First(); ok; ok = it.Next() {
		n := len(x.handles)
		if !base.Valid(it.Key()) {
			return nil, corruptf("sstable: index entry %d: separator %q is not an internal key", n, it.Key())
		}
		h, err := DecodeHandle(it.Value())
		if err != nil {
			return nil, corruptf("sstable: index entry %d: bad block handle %x", n, it.Value())
		}
		end, ok := h.end()
		if !ok || h.Offset < prevEnd || end > dataEnd {
			return nil, corruptf("sstable: index entry %d: %v overlaps the previous block (ending at %d) or lies past the data blocks (ending at %d)", n, h, prevEnd, dataEnd)
		}
		if n > 0 && base.Compare(x.key(n-1), it.Key()) >= 0 {
			return nil, corruptf("sstable: index entry %d: separator %s not after %s", n, base.Format(it.Key()), base.Format(x.key(n-1)))
		}
		prevEnd = end
		x.keys = append(x.keys, it.Key()...)
		if uint64(len(x.keys)) > 1<<32-1 {
			return nil, corruptf("sstable: index keys too large")
		}
		x.ends = append(x.ends, uint32(len(x.keys)))
		x.handles = append(x.handles, h)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return x, nil
}

// Len returns the number of data blocks.
func (x *Index) Len() int { return len(x.handles) }

// Separator returns the separator key of data block i.
func (x *Index) Separator(i int) []byte { return x.key(i) }

// Handle returns the handle of data block i.
func (x *Index) Handle(i int) BlockHandle { return x.handles[i] }

func (x *Index) key(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = x.ends[i-1]
	}
	return x.keys[start:x.ends[i]]
}

// Search returns the index of the first data block whose separator is >=
// ikey, or Len() if there is none.
func (x *Index) Search(ikey []byte) int {
	uk, tr := splitTarget(ikey)
	return x.search(uk, tr)
}

func (x *Index) search(userKey []byte, trailer uint64) int {
	lo, hi := 0, len(x.handles)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		// Separators were validated as internal keys by DecodeIndex.
		if c, _ := compareTarget(x.key(mid), userKey, trailer); c < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Index returns the table's decoded index.
func (r *Reader) Index() *Index { return r.index }

// Filter returns the table's bloom filter, or nil if it has none.
func (r *Reader) Filter() []byte { return r.filter }
