package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ringkv/ringkv/storage/base"
)

const (
	// minBuf is the smallest read buffer and the usual read size.
	minBuf = 64 << 10
	// maxEmptyReads is how many (0, nil) reads in a row are tolerated before
	// giving up with io.ErrNoProgress.
	maxEmptyReads = 100
)

// Reader reads the records of a log sequentially, from its first byte.
//
// Next distinguishes three ways a log can end:
//
//   - io.EOF: the log ends exactly after a valid record (or is empty).
//   - an error wrapping ErrTornTail: the log ends in an incomplete or damaged
//     record, and no valid record lies anywhere after it. This is the normal
//     result of a crash in the middle of a write; the records before it are
//     good and Offset gives the length of that clean prefix. Zero-filled tails
//     land here too.
//   - an error wrapping base.ErrCorruption: a damaged record is followed by at
//     least one valid record, so data that was once written whole has been
//     damaged. The error names both offsets.
//
// To decide between the last two, the Reader scans the rest of the log for a
// valid record, byte by byte from the damaged record's offset plus one. When
// the damaged record's header is itself valid (so its length can be trusted:
// the payload is short, or its checksum fails) the scan starts after the
// span that header claims instead, since a valid record cannot start inside
// a payload.
//
// The Reader streams: it holds at most about twice the largest record in
// memory, never the whole file, and it never allocates for a length it has
// not validated.
type Reader struct {
	src io.Reader
	// buf[lo:hi] holds bytes read from src but not consumed; buf[lo] is at
	// file offset off.
	buf    []byte
	lo, hi int
	off    int64
	eof    bool
	crc    crcScratch
	// clean is the end of the last valid record returned.
	clean int64
	// err is sticky: once set, Next returns it forever.
	err error
}

// NewReader returns a Reader of the log whose bytes src yields from offset 0.
func NewReader(src io.Reader) *Reader {
	return &Reader{src: src}
}

// Next returns the payload of the next record. The slice is valid only until
// the next call to Next; a caller that keeps it must copy it. At the end of
// the log Next returns io.EOF, or an error wrapping ErrTornTail or
// base.ErrCorruption (see Reader). An error from the underlying reader is
// returned wrapped. Every error is final: later calls return it again.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	avail, err := r.fill(HeaderSize)
	if err != nil {
		return nil, r.fail(err)
	}
	if avail == 0 {
		r.err = io.EOF
		r.buf = nil
		return nil, r.err
	}
	if avail < HeaderSize {
		return nil, r.damaged(1, fmt.Sprintf("incomplete header: %d of %d bytes", avail, HeaderSize))
	}
	h := r.buf[r.lo : r.lo+HeaderSize]
	length := binary.LittleEndian.Uint32(h[4:8])
	switch {
	case length == 0 && allZero(h):
		return nil, r.damaged(1, "zeroed header")
	case length == 0 || length > MaxRecordSize:
		return nil, r.damaged(1, fmt.Sprintf("invalid record length %d", length))
	case binary.LittleEndian.Uint32(h[0:4]) != headerCRC(&r.crc, r.off, h[4:12]):
		return nil, r.damaged(1, "header checksum mismatch")
	}
	total := HeaderSize + int(length)
	if avail, err = r.fill(total); err != nil {
		return nil, r.fail(err)
	}
	if avail < total {
		return nil, r.damaged(total, fmt.Sprintf("incomplete record: %d of %d bytes", avail, total))
	}
	rec := r.buf[r.lo : r.lo+total]
	if crc32.Checksum(rec[HeaderSize:], castagnoli) != binary.LittleEndian.Uint32(rec[8:12]) {
		return nil, r.damaged(total, fmt.Sprintf("payload checksum mismatch (length %d)", length))
	}
	r.lo += total
	r.off += int64(total)
	r.clean = r.off
	return rec[HeaderSize:], nil
}

// Offset returns the end of the last valid record Next returned: the length
// of the clean prefix of the log. After a torn tail, a log truncated to
// Offset bytes reads back cleanly.
func (r *Reader) Offset() int64 { return r.clean }

// damaged handles an invalid record at r.off: it scans for a valid record
// starting skip bytes further on and sets the final error accordingly.
func (r *Reader) damaged(skip int, reason string) error {
	bad := r.off
	if err := r.discard(skip); err != nil {
		return r.fail(err)
	}
	found, at, err := r.scan()
	if err != nil {
		return r.fail(err)
	}
	if found {
		r.err = base.CorruptionErrorf("wal: damaged record at offset %d (%s) is followed by a valid record at offset %d",
			bad, reason, at)
	} else {
		r.err = fmt.Errorf("%w at offset %d: %s", ErrTornTail, bad, reason)
	}
	r.buf = nil
	return r.err
}

// scan looks for a valid record at any offset from r.off on. It consumes
// the bytes it passes.
func (r *Reader) scan() (found bool, at int64, err error) {
	for {
		avail, err := r.fill(HeaderSize)
		if err != nil {
			return false, 0, err
		}
		if avail < HeaderSize {
			return false, 0, nil
		}
		// Check every position in the buffered window without refilling.
		for r.hi-r.lo >= HeaderSize {
			h := r.buf[r.lo : r.lo+HeaderSize]
			length := binary.LittleEndian.Uint32(h[4:8])
			if length != 0 && length <= MaxRecordSize &&
				binary.LittleEndian.Uint32(h[0:4]) == headerCRC(&r.crc, r.off, h[4:12]) {
				total := HeaderSize + int(length)
				avail, err := r.fill(total)
				if err != nil {
					return false, 0, err
				}
				if avail >= total {
					rec := r.buf[r.lo : r.lo+total]
					if crc32.Checksum(rec[HeaderSize:], castagnoli) == binary.LittleEndian.Uint32(rec[8:12]) {
						return true, r.off, nil
					}
				}
			}
			r.lo++
			r.off++
		}
	}
}

// fill tries to buffer at least n unread bytes. It returns how many are
// buffered, which is less than n only at the end of the input. The buffer
// grows only as data actually arrives, so a large n costs nothing unless the
// input has that many bytes.
func (r *Reader) fill(n int) (int, error) {
	empty := 0
	for r.hi-r.lo < n && !r.eof {
		if r.hi == len(r.buf) {
			if r.lo > 0 {
				r.hi = copy(r.buf, r.buf[r.lo:r.hi])
				r.lo = 0
			}
			if r.hi == len(r.buf) {
				size := max(2*len(r.buf), minBuf)
				size = min(size, max(n, minBuf))
				nb := make([]byte, size)
				r.hi = copy(nb, r.buf[r.lo:r.hi])
				r.lo = 0
				r.buf = nb
			}
		}
		m, err := r.src.Read(r.buf[r.hi:])
		if m < 0 || m > len(r.buf)-r.hi {
			return 0, fmt.Errorf("read returned invalid count %d", m)
		}
		r.hi += m
		switch {
		case errors.Is(err, io.EOF):
			r.eof = true
		case err != nil:
			return 0, err
		case m == 0:
			if empty++; empty >= maxEmptyReads {
				return 0, io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
	return r.hi - r.lo, nil
}

// discard consumes up to n bytes.
func (r *Reader) discard(n int) error {
	for n > 0 {
		avail, err := r.fill(min(n, minBuf))
		if err != nil {
			return err
		}
		if avail == 0 {
			return nil
		}
		k := min(n, avail)
		r.lo += k
		r.off += int64(k)
		n -= k
	}
	return nil
}

// fail records a read error from the underlying reader.
func (r *Reader) fail(err error) error {
	r.err = fmt.Errorf("wal: reading log at offset %d: %w", r.off, err)
	r.buf = nil
	return r.err
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
