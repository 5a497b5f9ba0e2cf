package sstable

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/golang/snappy"
	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/bloom"
	"github.com/ringkv/ringkv/storage/vfs"
)

// Compression settings for WriterOptions.Compression. The numbering matches
// storage.Compression (SnappyCompression = 0, NoCompression = 1); it is not
// the on-disk compression type byte.
const (
	SnappyCompression uint8 = 0
	NoCompression     uint8 = 1
)

// Defaults applied by NewWriter to zero WriterOptions fields.
const (
	DefaultBlockSize       = 4 << 10
	DefaultRestartInterval = 16
	DefaultBloomBitsPerKey = 10
)

// writeBufferSize is the size of the Writer's output buffer: the file sees
// writes of about this size, not one per block.
const writeBufferSize = 256 << 10

// WriterOptions configure a Writer. Zero fields take their defaults.
type WriterOptions struct {
	// BlockSize is the target uncompressed size of a data block.
	// Default (<= 0): 4 KiB.
	BlockSize int
	// RestartInterval is the number of keys between restart points in a
	// data block. Default (<= 0): 16.
	RestartInterval int
	// BloomBitsPerKey sizes the table's bloom filter. 0 means the default,
	// 10; a negative value writes no filter.
	BloomBitsPerKey int
	// Compression is SnappyCompression (0, the default) or NoCompression (1).
	Compression uint8
	// BytesPerSync starts the writeback of the table's bytes every this
	// many bytes as it is written, on files that can (vfs.Mappable's
	// WriteBack: the operating system's files on Linux), so that Finish's
	// fsync has little left to write. Without it a table reaches the
	// disk in one burst at that fsync, and a commit-log fsync issued
	// meanwhile waits behind it: that is a write's tail latency on every
	// flush and compaction. Default (0): 512 KiB; negative: never.
	BytesPerSync int
}

// DefaultBytesPerSync is WriterOptions.BytesPerSync's default.
const DefaultBytesPerSync = 512 << 10

// Meta describes a finished table.
type Meta struct {
	Size              uint64 // file size in bytes
	Smallest, Largest []byte // smallest and largest internal keys (nil if empty)
	SmallestSeq       base.SeqNum
	LargestSeq        base.SeqNum
	NumEntries        uint64
	NumDeletions      uint64
}

// Writer writes a table. Keys must be added in strictly increasing
// base.Compare order. A Writer is not safe for concurrent use.
//
// The Writer buffers its output and writes it to the file in chunks of about
// 256 KiB. Finish writes the rest and syncs the file; it does not close the
// file, which stays the caller's (typically the engine writes to a temporary
// name, calls Finish, closes and renames). After an error every method
// returns that error.
type Writer struct {
	f      vfs.File
	out    *bufio.Writer
	o      WriterOptions
	offset uint64 // bytes handed to out so far

	data      *blockWriter
	index     *blockWriter
	hashes    []uint32
	lastKey   []byte
	handleBuf []byte
	sepBuf    []byte
	compBuf   []byte
	// trailerBuf is a field so that handing it to the bufio.Writer does
	// not allocate.
	trailerBuf [BlockTrailerLen]byte

	meta     Meta
	props    Properties
	err      error
	finished bool
}

// NewWriter returns a Writer that writes a table to f, starting at f's
// current offset (normally 0 for a new file).
func NewWriter(f vfs.File, o WriterOptions) *Writer {
	if o.BlockSize <= 0 {
		o.BlockSize = DefaultBlockSize
	}
	if o.RestartInterval <= 0 {
		o.RestartInterval = DefaultRestartInterval
	}
	if o.BloomBitsPerKey == 0 {
		o.BloomBitsPerKey = DefaultBloomBitsPerKey
	}
	if o.BytesPerSync == 0 {
		o.BytesPerSync = DefaultBytesPerSync
	}
	var dst io.Writer = f
	if wb, ok := f.(writeBacker); ok && o.BytesPerSync > 0 {
		dst = &writebackFile{f: f, wb: wb, every: int64(o.BytesPerSync)}
	}
	w := &Writer{
		f:     f,
		out:   bufio.NewWriterSize(dst, writeBufferSize),
		o:     o,
		data:  newBlockWriter(o.RestartInterval),
		index: newBlockWriter(1),
	}
	if o.Compression != SnappyCompression && o.Compression != NoCompression {
		w.err = fmt.Errorf("sstable: unknown compression %d", o.Compression)
	}
	return w
}

var errFinished = errors.New("sstable: writer already finished")

// writeBacker is the part of vfs.Mappable the table writer uses.
type writeBacker interface {
	WriteBack(off, n int64) error
}

// writebackFile passes writes through to f and starts the writeback of
// each further every bytes written, up to the last whole page, so that
// no page is sent to the disk while a later write still changes it.
// Offsets count from the first byte written through it, a new table's
// file offset 0 (for a table written after other bytes the hint covers
// the wrong range, which costs only the hint). A failed WriteBack is not
// an error: it makes nothing durable either way, and a disk that fails it
// fails Finish's fsync too.
type writebackFile struct {
	f       vfs.File
	wb      writeBacker
	every   int64
	written int64 // bytes written through f
	started int64 // bytes whose writeback was started
}

func (s *writebackFile) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.written += int64(n)
	if end := s.written &^ (writebackPage - 1); end-s.started >= s.every {
		_ = s.wb.WriteBack(s.started, end-s.started)
		s.started = end
	}
	return n, err
}

// writebackPage is the page size writebackFile rounds to (the usual one;
// on a system with larger pages the last page of a range may be written
// twice, which costs only that).
const writebackPage = 4096

// Add appends an entry. ikey must be a valid internal key of kind KindSet or
// KindDelete, greater than every key added before.
func (w *Writer) Add(ikey, value []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return errFinished
	}
	if !base.Valid(ikey) {
		return fmt.Errorf("sstable: invalid internal key %q (shorter than %d bytes)", ikey, base.TrailerLen)
	}
	kind := base.KindOf(ikey)
	if kind != base.KindSet && kind != base.KindDelete {
		return fmt.Errorf("sstable: key %s has unknown kind %d", base.Format(ikey), kind)
	}
	if uint64(len(ikey))+uint64(len(value)) > maxBlockSize/2 {
		return fmt.Errorf("sstable: entry for key %s too large (%d key bytes, %d value bytes)", base.Format(ikey), len(ikey), len(value))
	}
	if w.meta.NumEntries > 0 && base.Compare(w.lastKey, ikey) >= 0 {
		return fmt.Errorf("sstable: keys out of order: %s added after %s", base.Format(ikey), base.Format(w.lastKey))
	}
	if !w.data.empty() && w.data.size()+entrySize(ikey, value) > w.o.BlockSize {
		if err := w.flushDataBlock(ikey); err != nil {
			return err
		}
	}
	uk := base.UserKey(ikey)
	if w.o.BloomBitsPerKey > 0 && (w.meta.NumEntries == 0 || string(base.UserKey(w.lastKey)) != string(uk)) {
		w.hashes = append(w.hashes, bloom.Hash(uk))
	}
	w.data.add(ikey, value)
	w.lastKey = append(w.lastKey[:0], ikey...)

	seq := base.Seq(ikey)
	if w.meta.NumEntries == 0 {
		w.meta.Smallest = append([]byte(nil), ikey...)
		w.meta.SmallestSeq, w.meta.LargestSeq = seq, seq
	} else {
		w.meta.SmallestSeq = min(w.meta.SmallestSeq, seq)
		w.meta.LargestSeq = max(w.meta.LargestSeq, seq)
	}
	w.meta.NumEntries++
	if kind == base.KindDelete {
		w.meta.NumDeletions++
	}
	w.props.RawKeySize += uint64(len(ikey))
	w.props.RawValueSize += uint64(len(value))
	return nil
}

// EstimatedSize estimates the size the table would have if finished now.
func (w *Writer) EstimatedSize() uint64 {
	est := w.offset + uint64(w.data.size()) + uint64(w.index.size()) + FooterLen + 64
	if w.o.BloomBitsPerKey > 0 {
		est += uint64(len(w.hashes)*w.o.BloomBitsPerKey/8) + BlockTrailerLen
	}
	return est
}

// flushDataBlock writes the current data block and indexes it under a
// separator between its last key and nextKey (nil: no next block).
func (w *Writer) flushDataBlock(nextKey []byte) error {
	h, err := w.writeBlock(w.data.finish(), true)
	if err != nil {
		return err
	}
	if nextKey != nil {
		w.sepBuf = separator(w.sepBuf[:0], w.lastKey, nextKey)
	} else {
		w.sepBuf = successor(w.sepBuf[:0], w.lastKey)
	}
	w.handleBuf = appendHandle(w.handleBuf[:0], h)
	w.index.add(w.sepBuf, w.handleBuf)
	w.data.reset()
	w.props.NumDataBlocks++
	w.props.DataSize += h.Length + BlockTrailerLen
	return nil
}

// writeBlock writes one block and its trailer, compressing it if allowed,
// configured and worthwhile.
func (w *Writer) writeBlock(block []byte, compress bool) (BlockHandle, error) {
	stored, typ := block, byte(blockTypeNone)
	if compress && w.o.Compression == SnappyCompression {
		w.compBuf = snappy.Encode(w.compBuf[:cap(w.compBuf)], block)
		if len(w.compBuf) <= len(block)-len(block)/8 {
			stored, typ = w.compBuf, blockTypeSnappy
		}
	}
	trailer := &w.trailerBuf
	trailer[0] = typ
	binary.LittleEndian.PutUint32(trailer[1:], blockChecksum(stored, typ))
	h := BlockHandle{Offset: w.offset, Length: uint64(len(stored))}
	if _, err := w.out.Write(stored); err != nil {
		w.err = fmt.Errorf("sstable: writing block at offset %d: %w", w.offset, err)
		return h, w.err
	}
	if _, err := w.out.Write(trailer[:]); err != nil {
		w.err = fmt.Errorf("sstable: writing block trailer at offset %d: %w", w.offset+h.Length, err)
		return h, w.err
	}
	w.offset += h.Length + BlockTrailerLen
	return h, nil
}

// Finish writes the last data block, the filter, index and properties blocks
// and the footer, flushes and syncs the file, and returns the table's Meta.
// It does not close the file. The Writer cannot be used afterwards.
func (w *Writer) Finish() (Meta, error) {
	if w.err != nil {
		return Meta{}, w.err
	}
	if w.finished {
		return Meta{}, errFinished
	}
	w.finished = true
	if !w.data.empty() {
		if err := w.flushDataBlock(nil); err != nil {
			return Meta{}, err
		}
	}
	var ft Footer
	ft.Version = FormatVersion
	if w.o.BloomBitsPerKey > 0 {
		filter := bloom.Build(nil, w.hashes, w.o.BloomBitsPerKey)
		if len(filter) > 0 {
			h, err := w.writeBlock(filter, false)
			if err != nil {
				return Meta{}, err
			}
			ft.Filter = h
			w.props.FilterSize = uint64(len(filter))
		}
	}
	h, err := w.writeBlock(w.index.finish(), true)
	if err != nil {
		return Meta{}, err
	}
	ft.Index = h
	w.props.IndexSize = h.Length

	w.props.NumEntries = w.meta.NumEntries
	w.props.NumDeletions = w.meta.NumDeletions
	w.props.SmallestSeq = w.meta.SmallestSeq
	w.props.LargestSeq = w.meta.LargestSeq
	if ft.Properties, err = w.writeBlock(w.props.encode(newBlockWriter(1)), true); err != nil {
		return Meta{}, err
	}
	if _, err := w.out.Write(ft.encode()); err != nil {
		w.err = fmt.Errorf("sstable: writing footer at offset %d: %w", w.offset, err)
		return Meta{}, w.err
	}
	w.offset += FooterLen
	if err := w.out.Flush(); err != nil {
		w.err = fmt.Errorf("sstable: flushing table: %w", err)
		return Meta{}, w.err
	}
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("sstable: syncing table: %w", err)
		return Meta{}, w.err
	}
	if w.meta.NumEntries > 0 {
		w.meta.Largest = append([]byte(nil), w.lastKey...)
	}
	w.meta.Size = w.offset
	w.hashes = nil
	return w.meta, nil
}

// maxTrailer makes a separator sort before every real key with its user key.
var maxTrailer = base.MakeTrailer(base.SeqNumMax, base.KindMax)

// separator appends to dst an internal key k with a <= k < b (a < b), as
// short as it cheaply can be.
func separator(dst, a, b []byte) []byte {
	ua, ub := base.UserKey(a), base.UserKey(b)
	n := commonPrefix(ua, ub)
	if n < len(ua) && n < len(ub) {
		// ua[n] < ub[n] since a < b.
		if ua[n] < 0xff && ua[n]+1 < ub[n] {
			return shortened(dst, a, ua[:n+1], n)
		}
		// ua[n]+1 == ub[n] (or ua[n] == 0xff cannot happen here as
		// ua[n] < ub[n]): keep ua[n] and bump a later byte of ua.
		for i := n + 1; i < len(ua); i++ {
			if ua[i] < 0xff {
				return shortened(dst, a, ua[:i+1], i)
			}
		}
	}
	return append(dst, a...)
}

// successor appends to dst a short internal key k >= a.
func successor(dst, a []byte) []byte {
	ua := base.UserKey(a)
	for i := range ua {
		if ua[i] < 0xff {
			return shortened(dst, a, ua[:i+1], i)
		}
	}
	return append(dst, a...)
}

// shortened appends prefix with its byte at i incremented and the maximal
// trailer, unless that is not shorter than a, in which case it appends a.
func shortened(dst, a, prefix []byte, i int) []byte {
	if len(prefix)+base.TrailerLen >= len(a) {
		return append(dst, a...)
	}
	start := len(dst)
	dst = append(dst, prefix...)
	dst[start+i]++
	return binary.LittleEndian.AppendUint64(dst, maxTrailer)
}
