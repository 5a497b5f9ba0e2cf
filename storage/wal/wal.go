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
	"runtime/debug"
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
	// finished: Finish trimmed and synced the log; no more writes.
	finished bool

	// Mapped mode (NewMappedWriter on a vfs.Mappable file): records are
	// copied into win, a shared mapping of the file's bytes [winOff,
	// winOff+len(win)), which holds size. The file is preallocated to the
	// end of win.
	mf     vfs.Mappable
	win    []byte
	winOff int64
	// faulted is the end of the part of win prefaulted so far (an offset
	// in win); noPrefault: the file refused to prefault.
	faulted    int
	noPrefault bool
	pwrites    int // writes made with pwriteMapped (for tests)
	// wbStarted is the end of the bytes whose writeback has been started.
	wbStarted int64
	// writeback runs the WriteBack calls started for finished windows;
	// Sync, Finish and Close wait for them.
	writeback sync.WaitGroup
}

// NewWriter returns a Writer that appends records to f. f must be a newly
// created, empty file positioned at offset 0 (what vfs.FS.Create returns):
// each record's checksum covers its offset in the file. The Writer takes
// ownership of f; Close closes it.
func NewWriter(f vfs.File) *Writer {
	return &Writer{f: f}
}

// MapWindow is how much of the file a mapped Writer preallocates and maps at
// a time.
const MapWindow = 1 << 20

// prefaultAhead is how far ahead of the records a mapped Writer made with
// prefault prefaults its mapping, one system call for that many bytes
// instead of a page fault per page. The pages prefaulted past the last
// record when the log ends are cut off unwritten. A prefaulted page is
// dirty at once, so an fsync before records reach it writes it out as
// zeros first: prefault suits logs that are rarely synced.
const prefaultAhead = 64 << 10

// NewMappedWriter is NewWriter for a commit log: when f is a vfs.Mappable
// (an operating-system file on Linux), records are copied into a shared
// mapping of the file instead of written with one write(2) per call. A
// system call per commit costs more than the rest of a small write on some
// machines (virtual machines whose guest kernel sits behind the
// hypervisor, where every system call switches address spaces); a copy into
// a shared mapping costs a page fault per 4 KiB page instead.
//
// Without prefault, a write of minPwrite bytes or more goes through
// pwrite(2) into the same page cache instead: a copy would fault on every
// page it reaches first.
//
// The guarantees are those of NewWriter: once WriteRecords returns, its
// records are in the operating system's page cache (a shared mapping is the
// page cache), so a crash of the process loses none of them; Sync (fsync)
// makes them durable. The file is preallocated MapWindow bytes at a time, so
// until Finish or Close cuts it back to its last record it may end in
// zeros, which a Reader takes for a torn tail, as it would a write cut
// short. A
// page the filesystem cannot back when it is written (no space left on a
// copy-on-write filesystem, where preallocation reserves nothing; an I/O
// error) faults; the copy is guarded, so the write returns an error and
// fails the Writer as a failed write(2) would, instead of the fault
// killing the process.
//
// When f is not Mappable, or the first preallocation or mapping fails (a
// filesystem without fallocate), the Writer writes as NewWriter's does.
//
// prefault makes the Writer prefault its mapping prefaultAhead bytes ahead
// of the records (see prefaultAhead); the engine asks for it unless every
// commit is synced (SyncBatch).
func NewMappedWriter(f vfs.File, prefault bool) *Writer {
	w := &Writer{f: f, noPrefault: !prefault}
	mf, ok := f.(vfs.Mappable)
	if !ok {
		return w
	}
	w.mf = mf
	if err := w.mapWindow(0); err != nil {
		w.mf = nil
		// The preallocation may have extended the file: cut it back so
		// that write(2) mode starts from an empty file.
		if terr := mf.Truncate(0); terr != nil {
			w.err = fmt.Errorf("wal: mapping failed (%v) and truncating the log back failed: %w", err, terr)
		}
	}
	return w
}

// Mapped reports whether the Writer writes through a shared mapping.
func (w *Writer) Mapped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mf != nil
}

// mapWindow preallocates and maps [off, off+MapWindow).
func (w *Writer) mapWindow(off int64) error {
	if err := w.mf.Preallocate(off, MapWindow); err != nil {
		return err
	}
	b, err := w.mf.Map(off, MapWindow)
	if err != nil {
		return err
	}
	w.win, w.winOff, w.faulted = b, off, 0
	return nil
}

// unmap releases the current window, if any.
func (w *Writer) unmap() error {
	if w.win == nil {
		return nil
	}
	b := w.win
	w.win = nil
	return w.mf.Unmap(b)
}

// writeMapped writes buf at w.size: it copies buf into the mapping, moving
// the window on as it fills, or, for minPwrite bytes or more when the
// Writer does not prefault, writes it with pwrite(2) (pwriteMapped). It
// returns how many bytes were written.
func (w *Writer) writeMapped(buf []byte) (int, error) {
	if len(buf) >= minPwrite && w.noPrefault {
		return w.pwriteMapped(buf)
	}
	n := 0
	for n < len(buf) {
		pos := w.size + int64(n)
		end := w.winOff + int64(len(w.win))
		if w.win == nil || pos >= end {
			next := pos - pos%MapWindow // the window holding pos
			if w.win != nil {
				// The window is full and is never written again: start
				// its writeback now (see startWriteBack).
				w.startWriteBack(w.winOff + MapWindow)
			}
			if err := w.unmap(); err != nil {
				return n, err
			}
			if err := w.mapWindow(next); err != nil {
				return n, err
			}
		}
		at := int(pos - w.winOff)
		if end := at + len(buf) - n; end > w.faulted && !w.noPrefault {
			// Whole prefaultAhead blocks, so that every call starts on a
			// page boundary.
			upto := min((end+prefaultAhead-1)/prefaultAhead*prefaultAhead, len(w.win))
			if err := w.mf.Prefault(w.win[w.faulted:upto]); err != nil {
				if !errors.Is(err, vfs.ErrPrefaultUnsupported) {
					// The pages cannot be backed (a full copy-on-write
					// filesystem, where fallocate reserves nothing, or a
					// failing disk): writing through them would fault.
					return n, fmt.Errorf("wal: prefault the mapped log at offset %d: %w", w.winOff+int64(w.faulted), err)
				}
				w.noPrefault = true // an older kernel: pages fault one at a time
			}
			w.faulted = upto
		}
		c, err := copyGuarded(w.win[at:], buf[n:])
		n += c
		if err != nil {
			return n, fmt.Errorf("wal: write the mapped log at offset %d: %w", pos, err)
		}
	}
	return n, nil
}

// minPwrite is the length from which a mapped Writer that does not
// prefault writes with pwrite(2) instead of copying into the mapping: each
// page a copy reaches first faults (a few microseconds on a virtual
// machine), while one system call costs about as much as one fault, so a
// write of a page or more is cheaper as a system call.
const minPwrite = 4096

// pwriteMapped writes buf at w.size with one pwrite(2) (see minPwrite).
// The page cache is the mapping's, so the records are in it, as after a
// copy into the mapping; a process killed during the call leaves a prefix
// of buf, as write(2) does. Windows the write leaves behind are never
// written again: their writeback starts, as when a copy fills one, and the
// next copy maps the window it lands in.
func (w *Writer) pwriteMapped(buf []byte) (int, error) {
	pos := w.size
	w.pwrites++
	n, err := w.mf.WriteAt(buf, pos)
	if n < 0 || n > len(buf) {
		n = 0
	}
	if err != nil {
		return n, fmt.Errorf("wal: write the mapped log at offset %d: %w", pos, err)
	}
	passed := (pos + int64(n)) / MapWindow * MapWindow
	w.startWriteBack(passed)
	if w.win != nil && passed > w.winOff {
		if err := w.unmap(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// startWriteBack starts, in the background, the writeback of the log's
// bytes from where the last one ended up to upto (whole windows, never
// written again), so that the fsync that ends the log (or a SyncBatch
// commit) finds little left to write. It changes nothing about what is
// durable when.
func (w *Writer) startWriteBack(upto int64) {
	if upto <= w.wbStarted {
		return
	}
	off, n := w.wbStarted, upto-w.wbStarted
	w.wbStarted = upto
	w.writeback.Go(func() { _ = w.mf.WriteBack(off, n) })
}

// errMappedFault is returned when a page of the mapped log could not be
// written (SIGBUS): on a full copy-on-write filesystem (btrfs, zfs)
// fallocate reserves no space, so the kernel finds none only when the
// page is first written.
var errMappedFault = errors.New("the page could not be backed on disk (no space left on a copy-on-write filesystem, or an I/O error)")

// copyGuarded copies src into the mapped dst, in order (copyInOrder),
// turning a fault on the mapping into an error instead of a fatal signal.
// It returns 0 on a fault: the caller counts nothing of a copy that did
// not finish.
func copyGuarded(dst, src []byte) (n int, err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("%w: %v", errMappedFault, r)
		}
	}()
	return copyInOrder(dst, src), nil
}

// copyInOrder is copy(dst, src) with its stores in increasing address
// order, eight bytes at a time. A process killed in the middle of it
// leaves a prefix of src in the mapping (the page cache), as a write(2)
// cut short would: the log then ends in a torn record followed by zeros,
// which recovery reads as a torn tail. The runtime's memmove gives no such
// order (for long copies it stores the head last), so a kill inside it
// could leave later records of a batch written and an earlier one not,
// which recovery must refuse as damage in the middle of the log
// (TestCrashLoop found this).
func copyInOrder(dst, src []byte) int {
	n := min(len(dst), len(src))
	i := 0
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:]))
	}
	for ; i < n; i++ {
		dst[i] = src[i]
	}
	return n
}

// WriteRecords appends recs, in order, with exactly one Write call on the
// file (a mapped Writer copies them into its mapping instead). It does not
// sync. Every record must be 1..MaxRecordSize bytes long; if one is not,
// nothing is written and the Writer is not failed. Writing no records is a
// no-op.
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
	var n int
	var err error
	if w.mf != nil {
		n, err = w.writeMapped(buf)
	} else {
		n, err = w.f.Write(buf)
	}
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
	w.writeback.Wait()
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("wal: sync at offset %d failed: %w", w.size, err)
		return w.err
	}
	return nil
}

// Finish ends the log for good: a mapped Writer releases its mapping and
// cuts the preallocated space after the last record, then the file is
// synced, so that on disk the log ends exactly after its last record. The
// engine finishes a log before it acknowledges writes in the next one:
// recovery takes a log that ends in a torn tail (zeros included) followed
// by a log holding writes for damage. Later writes and syncs return
// ErrClosed; Close must still be called. A failure fails the Writer.
func (w *Writer) Finish() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.mf != nil {
		w.writeback.Wait()
		err := w.unmap()
		if err == nil {
			err = w.mf.Truncate(w.size)
		}
		if err != nil {
			w.err = fmt.Errorf("wal: cutting the log back to %d bytes: %w", w.size, err)
			return w.err
		}
	}
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("wal: sync at offset %d failed: %w", w.size, err)
		return w.err
	}
	w.finished = true
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
	var merr error
	if w.mf != nil {
		// Without Finish (a failed engine, a failed rotation): release the
		// mapping and cut the preallocated zeros, best effort, unsynced.
		w.writeback.Wait()
		merr = w.unmap()
		if merr == nil && !w.finished {
			merr = w.mf.Truncate(w.size)
		}
	}
	cerr := w.f.Close()
	if cerr == nil && merr != nil {
		cerr = merr
	}
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
	if w.closed || w.finished {
		return ErrClosed
	}
	return nil
}
