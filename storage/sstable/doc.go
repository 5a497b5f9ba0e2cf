// Package sstable implements ringkv's immutable sorted tables: the on-disk
// files of the LSM tree. A Writer turns a strictly increasing stream of
// internal keys (see package base) and their values into a table; a Reader
// serves point lookups (Get) and ordered iteration (NewIter) over it.
//
// # File layout
//
// A table is a sequence of blocks followed by a fixed-size footer:
//
//	[data block 0][trailer]
//	...
//	[data block N-1][trailer]
//	[filter block][trailer]       (absent when bloom filters are disabled)
//	[index block][trailer]
//	[properties block][trailer]
//	[footer]                      (64 bytes)
//
// A block handle is the pair (offset, length): the file offset of a block and
// the length of its stored (possibly compressed) bytes, not counting the
// trailer.
//
// # Block trailer
//
// Every block on disk is followed by a 5-byte trailer:
//
//	[1 byte compression type: 0 = none, 1 = snappy]
//	[4 bytes CRC32C (Castagnoli), little-endian, over the stored block bytes
//	 followed by the compression-type byte]
//
// A block is stored snappy-compressed only when that saves at least 1/8 of
// its uncompressed size. The checksum is verified on every block read from
// the file, before the block is decompressed, parsed or inserted into the
// block cache; so a cached block is always a verified one.
//
// # Block format
//
// Data, index and properties blocks share one format. A block is a run of
// entries followed by a restart array:
//
//	entry:    shared uvarint | unshared uvarint | valueLen uvarint |
//	          key[shared:] (unshared bytes) | value (valueLen bytes)
//	restarts: offset uint32 LE, repeated numRestarts times
//	          numRestarts uint32 LE
//
// shared is the length of the prefix the key has in common with the previous
// key of the block. Every RestartInterval-th entry (the first one included)
// is a restart point: it stores its key in full (shared = 0) and its offset
// is listed in the restart array, so a seek binary-searches the restart
// points and then scans at most RestartInterval entries. A block with entries
// has at least one restart point; an empty block is just a zero count.
//
// In data blocks, keys are encoded internal keys in base.Compare order and
// values are the user values (empty for deletions). Blocks are cut before an
// entry that would take the block past BlockSize uncompressed bytes, so a
// block only exceeds BlockSize when it holds a single large entry.
//
// # Index block
//
// The index block has one entry per data block, in order, every entry a
// restart point. The key is a separator: an internal key >= every key of
// that data block and < every key of the next one. Where it makes the key
// shorter, the separator is a short user key strictly between the two
// blocks' user keys, with trailer (base.SeqNumMax, base.KindMax); otherwise it
// is the block's last key. The last block's separator is a short successor
// of its last user key (or the last key itself). The value is the block
// handle: offset uvarint, length uvarint.
//
// # Filter block
//
// One bloom filter (package bloom) over bloom.Hash of every distinct user
// key of the table, stored uncompressed. Get consults it before touching the
// index or any data block.
//
// # Properties block
//
// A block (same format) of name → uvarint entries, in name order, e.g.
// "ringkv.num-entries". Readers ignore names they do not know. See
// Properties for the list.
//
// # Footer
//
// The last 64 bytes of the file:
//
//	offset  size
//	 0      16   filter handle     (offset uint64 LE, length uint64 LE; 0,0 = none)
//	16      16   index handle      (offset uint64 LE, length uint64 LE)
//	32      16   properties handle (offset uint64 LE, length uint64 LE)
//	48       4   format version, uint32 LE (currently 1)
//	52       4   CRC32C over bytes [0, 52) of the footer, uint32 LE
//	56       8   magic "\x89ringkvT"
//
// Open checks, in order, the file size, the magic, the version, the footer
// checksum, and that every handle lies inside the file. Every problem with
// the file's contents is reported as an error wrapping base.ErrCorruption
// that names the file offset and what was wrong; no input makes this package
// panic, and a damaged block is never returned as data.
package sstable
