package sstable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/golang/snappy"
	"github.com/ringkv/ringkv/storage/base"
)

const (
	// FooterLen is the size of the footer at the end of every table.
	FooterLen = 64
	// BlockTrailerLen is the size of the trailer after every block.
	BlockTrailerLen = 5
	// FormatVersion is the table format version this package writes and
	// reads.
	FormatVersion = 1
	// Magic ends every table.
	Magic = "\x89ringkvT"

	// On-disk compression types (the first byte of a block trailer).
	blockTypeNone   = 0
	blockTypeSnappy = 1

	// maxBlockSize bounds the uncompressed size of any block, written or
	// read: restart offsets are uint32 and a forged length must not make
	// the reader allocate without limit.
	maxBlockSize = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// blockChecksum is the CRC32C of the stored block bytes followed by the
// compression-type byte.
func blockChecksum(stored []byte, typ byte) uint32 {
	c := crc32.Update(0, crcTable, stored)
	return crc32.Update(c, crcTable, byteValues[typ:int(typ)+1])
}

// byteValues[i] == i: one-byte slices without allocating.
var byteValues = func() (b [256]byte) {
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// BlockHandle locates a block: its file offset and the length of its stored
// bytes, not counting the block trailer.
type BlockHandle struct {
	Offset, Length uint64
}

// end returns the offset just past the block's trailer, and false on
// overflow.
func (h BlockHandle) end() (uint64, bool) {
	e := h.Offset + h.Length
	if e < h.Offset || e+BlockTrailerLen < e {
		return 0, false
	}
	return e + BlockTrailerLen, true
}

func (h BlockHandle) String() string {
	return fmt.Sprintf("{offset %d, length %d}", h.Offset, h.Length)
}

// appendHandle encodes h as two uvarints (the index-block value format).
func appendHandle(dst []byte, h BlockHandle) []byte {
	dst = binary.AppendUvarint(dst, h.Offset)
	return binary.AppendUvarint(dst, h.Length)
}

// DecodeHandle decodes an index-block value: offset and length as uvarints,
// with nothing after them.
func DecodeHandle(b []byte) (BlockHandle, error) {
	off, n := binary.Uvarint(b)
	if n <= 0 {
		return BlockHandle{}, corruptf("sstable: bad block handle offset %x", b)
	}
	length, m := binary.Uvarint(b[n:])
	if m <= 0 || n+m != len(b) {
		return BlockHandle{}, corruptf("sstable: bad block handle %x", b)
	}
	return BlockHandle{Offset: off, Length: length}, nil
}

// Footer is the decoded fixed-size footer of a table.
type Footer struct {
	Filter     BlockHandle // Length 0: the table has no filter
	Index      BlockHandle
	Properties BlockHandle
	Version    uint32
}

func (f Footer) encode() []byte {
	b := make([]byte, FooterLen)
	le := binary.LittleEndian
	le.PutUint64(b[0:], f.Filter.Offset)
	le.PutUint64(b[8:], f.Filter.Length)
	le.PutUint64(b[16:], f.Index.Offset)
	le.PutUint64(b[24:], f.Index.Length)
	le.PutUint64(b[32:], f.Properties.Offset)
	le.PutUint64(b[40:], f.Properties.Length)
	le.PutUint32(b[48:], f.Version)
	le.PutUint32(b[52:], crc32.Checksum(b[:52], crcTable))
	copy(b[56:], Magic)
	return b
}

// DecodeFooter decodes the last FooterLen bytes of a table, checking magic,
// version and checksum (in that order). It does not check the handles
// against a file size; Open does. Errors wrap base.ErrCorruption and give
// offsets relative to the start of b.
func DecodeFooter(b []byte) (Footer, error) {
	if len(b) != FooterLen {
		return Footer{}, corruptf("sstable: footer is %d bytes, want %d", len(b), FooterLen)
	}
	if string(b[56:]) != Magic {
		return Footer{}, corruptf("sstable: bad magic %q at footer offset 56 (not a ringkv table)", b[56:])
	}
	le := binary.LittleEndian
	f := Footer{
		Filter:     BlockHandle{le.Uint64(b[0:]), le.Uint64(b[8:])},
		Index:      BlockHandle{le.Uint64(b[16:]), le.Uint64(b[24:])},
		Properties: BlockHandle{le.Uint64(b[32:]), le.Uint64(b[40:])},
		Version:    le.Uint32(b[48:]),
	}
	if f.Version != FormatVersion {
		return Footer{}, corruptf("sstable: unknown format version %d at footer offset 48 (want %d)", f.Version, FormatVersion)
	}
	if got, want := crc32.Checksum(b[:52], crcTable), le.Uint32(b[52:]); got != want {
		return Footer{}, corruptf("sstable: footer checksum mismatch at footer offset 52 (stored %#08x, computed %#08x)", want, got)
	}
	return f, nil
}

// UnwrapBlock checks a block as stored on disk — stored bytes followed by
// the 5-byte trailer — and returns its uncompressed contents. The checksum
// is verified before anything else is looked at. If the block is not
// compressed, the result aliases raw. Errors wrap base.ErrCorruption.
func UnwrapBlock(raw []byte) ([]byte, error) {
	return unwrapBlock(raw, nil)
}

// unwrapBlock is UnwrapBlock decompressing into dst when it is big enough.
func unwrapBlock(raw, dst []byte) ([]byte, error) {
	if len(raw) < BlockTrailerLen {
		return nil, corruptf("sstable: block of %d bytes is shorter than its trailer", len(raw))
	}
	n := len(raw) - BlockTrailerLen
	stored, typ := raw[:n], raw[n]
	want := binary.LittleEndian.Uint32(raw[n+1:])
	if got := blockChecksum(stored, typ); got != want {
		return nil, corruptf("sstable: block checksum mismatch (stored %#08x, computed %#08x)", want, got)
	}
	switch typ {
	case blockTypeNone:
		return stored, nil
	case blockTypeSnappy:
		dlen, err := snappy.DecodedLen(stored)
		if err != nil {
			return nil, corruptf("sstable: bad snappy block header: %v", err)
		}
		// Snappy expands at most ~21x (a 3-byte copy yields 64 bytes).
		if dlen > maxBlockSize || dlen > 24*len(stored)+64 {
			return nil, corruptf("sstable: snappy block claims %d bytes from %d", dlen, len(stored))
		}
		if cap(dst) < dlen {
			dst = make([]byte, dlen)
		}
		out, err := snappy.Decode(dst[:cap(dst)], stored)
		if err != nil {
			return nil, corruptf("sstable: bad snappy block: %v", err)
		}
		return out, nil
	default:
		return nil, corruptf("sstable: unknown block compression type %d", typ)
	}
}

// corruptError reports damaged table data. It wraps base.ErrCorruption and
// reads "ringkv/storage: corruption: sstable: <context>: <what>". Errors
// made by a Reader name its table (hasTable).
type corruptError struct {
	msg      string
	table    uint64
	hasTable bool
}

// CorruptTable returns the file number of the table whose damage err
// reports: err (or an error it wraps) is a corruption error made by a
// Reader, which knows its table by ReaderOptions.FileNum. ok is false for
// any other error, including corruption found by the decoders alone.
func CorruptTable(err error) (fileNum uint64, ok bool) {
	var ce *corruptError
	if errors.As(err, &ce) && ce.hasTable {
		return ce.table, true
	}
	return 0, false
}

func (e *corruptError) Error() string { return base.ErrCorruption.Error() + ": " + e.msg }
func (e *corruptError) Unwrap() error { return base.ErrCorruption }

// corruptf returns a corruption error; format should start with "sstable: ".
func corruptf(format string, args ...any) error {
	return &corruptError{msg: fmt.Sprintf(format, args...)}
}
