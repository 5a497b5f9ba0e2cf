// Package wal implements the record format of the engine's commit log. The
// manifest file uses the same format.
//
// # On-disk format
//
// A log is a sequence of records with no file header and no padding. Every
// record is a 12-byte header followed by its payload:
//
//	offset  size  field
//	0       4     headerCRC  CRC-32C (Castagnoli), little-endian, over
//	              pos (8 bytes, little-endian) || bytes 4..12 of this header
//	4       4     length     payload length, little-endian, 1..MaxRecordSize
//	8       4     payloadCRC CRC-32C (Castagnoli), little-endian, over payload
//	12      length payload
//
// pos is the record's own offset in the file (the offset of its headerCRC
// field); it is not stored, only mixed into headerCRC. A record is valid when
// both checksums match and the length is in range.
//
// Compared with a single checksum over length||payload this costs four more
// bytes per record (records are whole group-commit batches, so that is
// noise) and buys two things:
//
//   - The header is checked on its own. A damaged or garbage length is
//     rejected before anything is read or allocated for the payload, and the
//     forward scan that tells a torn tail from mid-log corruption (see
//     Reader) checks each candidate position in constant time, so recovery
//     stays linear in the file size even over a large garbage tail. With one
//     checksum over length||payload every candidate whose length happens to
//     fit would cost a checksum over up to MaxRecordSize bytes, which is
//     quadratic in the worst case.
//   - Mixing the position into the checksum means a record is valid only at
//     the offset it was written at. User data inside a payload that happens
//     to be a well-formed record (a value that is itself a copy of a log, say)
//     is not valid where it lies, so it can never make a torn tail look like
//     mid-log corruption, and bytes written at the wrong offset are caught.
//
// Files are never recycled (the engine creates every log afresh), so stale
// records of an older log cannot appear in a new one and the header carries
// no log number.
//
// Zero bytes never form a valid record (the length would be 0), so a
// zero-filled tail, such as preallocated space, reads as a torn tail.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/ringkv/ringkv/storage/vfs"
)

const (
	// HeaderSize is the size of a record header.
	HeaderSize = 12
	// MaxRecordSize is the largest payload a record may carry.
	MaxRecordSize = 128 << 20
)

var (
	// ErrTornTail is wrapped by the error Reader.Next returns when the log
	// ends in an incomplete or damaged record that no valid record follows:
	// the tail of a write that a crash interrupted. Reader.Offset then gives
	// the length of the clean prefix.
	ErrTornTail = errors.New("wal: torn tail")
	// ErrClosed is returned by a Writer's methods after Close.
	ErrClosed = errors.New("wal: writer closed")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcScratch is room to assemble the input of headerCRC. Callers keep one in
// a long-lived struct: a local array would escape to the heap through the
// checksum call on every record.
type crcScratch [8 + HeaderSize - 4]byte

// headerCRC returns the checksum of a header at file offset pos; rest is
// bytes 4..12 of the header (length and payload checksum).
func headerCRC(s *crcScratch, pos int64, rest []byte) uint32 {
	binary.LittleEndian.PutUint64(s[0:8], uint64(pos))
	copy(s[8:], rest)
	return crc32.Checksum(s[:], castagnoli)
}

// appendRecord appends the encoding of a record at file offset pos to dst.
func appendRecord(s *crcScratch, dst []byte, pos int64, payload []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	h := dst[n : n+HeaderSize]
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(h[0:4], headerCRC(s, pos, h[4:12]))
	return append(dst, payload...)
}

// maxRetainedBuf bounds the encoding buffer a Writer keeps between calls; a
// larger one, grown by an unusually big batch, is dropped after use.
const maxRetainedBuf = 4 << 20

// Writer appends records to a log file. Its methods may be called from
// several goroutines; they are serialized.
//
// After a write or sync error the Writer is failed: every later call returns
// that same error. An fsync error must never be retried, since the kernel may
// already have dropped the dirty pages it could not write, and a later fsync
// that succeeds would claim durability for data that is gone.
type Writer struct {
	mu     sync.Mutex
	f      vfs.File
	buf    []byte
	crc    crcScratch
	size   int64
	err    error // sticky failure
	closed bool
}

// NewWriter returns a Writer that appends records to f. f must be a newly
// created, empty file positioned at offset 0 (what vfs.FS.Create returns):
// each record's checksum covers its offset in the file. The Writer takes
// ownership of f; Close closes it.
func NewWriter(f vfs.File) *Writer {
	return &Writer{f: f}
}

// WriteRecords appends recs, in order, with exactly one Write call on the
// file. It does not sync. Every record must be 1..MaxRecordSize bytes long;
// if one is not, nothing is written and the Writer is not failed. Writing no
// records is a no-op.
func (w *Writer) WriteRecords(recs ...[]byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	total := 0
	for i, r := range recs {
		if len(r) == 0 || len(r) > MaxRecordSize {
			return fmt.Errorf("wal: record %d of %d has length %d, want 1..%d", i, len(recs), len(r), MaxRecordSize)
		}
		total += HeaderSize + len(r)
	}
	buf := w.buf[:0]
	if cap(buf) < total {
		buf = make([]byte, 0, total)
	}
	pos := w.size
	for _, r := range recs {
		buf = appendRecord(&w.crc, buf, pos, r)
		pos += int64(HeaderSize + len(r))
	}
	n, err := w.f.Write(buf)
	if n < 0 || n > len(buf) {
		n = 0
	}
	w.size += int64(n)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	if cap(buf) <= maxRetainedBuf {
		w.buf = buf[:0]
	} else {
		w.buf = nil
	}
	if err != nil {
		w.err = fmt.Errorf("wal: write of %d records (%d bytes) at offset %d failed after %d bytes: %w",
			len(recs), len(buf), pos-int64(len(buf)), n, err)
		return w.err
	}
	return nil
}

// Sync makes every record written so far durable. A failure fails the
// Writer for good.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("wal: sync at offset %d failed: %w", w.size, err)
		return w.err
	}
	return nil
}

// Size returns the number of bytes written to the file so far (including
// the part of a failed write that the file accepted).
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Err returns the error that failed the Writer, or nil.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close closes the file without syncing it. It returns the error that
// failed the Writer, if any, else the file's Close error. Later calls return
// ErrClosed (or the failure).
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		if w.err != nil {
			return w.err
		}
		return ErrClosed
	}
	w.closed = true
	w.buf = nil
	cerr := w.f.Close()
	if w.err != nil {
		return w.err
	}
	if cerr != nil {
		return fmt.Errorf("wal: close: %w", cerr)
	}
	return nil
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	return nil
}
