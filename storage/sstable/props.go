package sstable

import (
	"encoding/binary"
	"fmt"

	"github.com/ringkv/ringkv/storage/base"
)

// Properties describe a table. They are stored in the properties block as
// name → uvarint entries; the names are listed by the field.
type Properties struct {
	NumEntries    uint64      // "ringkv.num-entries": entries of every kind
	NumDeletions  uint64      // "ringkv.num-deletions": KindDelete entries
	SmallestSeq   base.SeqNum // "ringkv.smallest-seq" (0 for an empty table)
	LargestSeq    base.SeqNum // "ringkv.largest-seq"
	RawKeySize    uint64      // "ringkv.raw-key-size": sum of internal key lengths
	RawValueSize  uint64      // "ringkv.raw-value-size": sum of value lengths
	NumDataBlocks uint64      // "ringkv.num-data-blocks"
	DataSize      uint64      // "ringkv.data-size": bytes of data blocks with trailers
	IndexSize     uint64      // "ringkv.index-size": stored bytes of the index block
	FilterSize    uint64      // "ringkv.filter-size": bytes of the filter (0: none)
}

func (p *Properties) fields() []struct {
	name string
	v    *uint64
} {
	return []struct {
		name string
		v    *uint64
	}{ // sorted by name
		{"ringkv.data-size", &p.DataSize},
		{"ringkv.filter-size", &p.FilterSize},
		{"ringkv.index-size", &p.IndexSize},
		{"ringkv.largest-seq", (*uint64)(&p.LargestSeq)},
		{"ringkv.num-data-blocks", &p.NumDataBlocks},
		{"ringkv.num-deletions", &p.NumDeletions},
		{"ringkv.num-entries", &p.NumEntries},
		{"ringkv.raw-key-size", &p.RawKeySize},
		{"ringkv.raw-value-size", &p.RawValueSize},
		{"ringkv.smallest-seq", (*uint64)(&p.SmallestSeq)},
	}
}

// encode appends the properties block (before its trailer) to bw.
func (p *Properties) encode(bw *blockWriter) []byte {
	bw.reset()
	var v []byte
	for _, f := range p.fields() {
		v = binary.AppendUvarint(v[:0], *f.v)
		bw.add([]byte(f.name), v)
	}
	return bw.finish()
}

// DecodeProperties decodes an uncompressed properties block. Unknown names
// are ignored. Errors wrap base.ErrCorruption.
func DecodeProperties(block []byte) (Properties, error) {
	var p Properties
	it, err := NewBlockIter(block)
	if err != nil {
		return p, err
	}
	fields := p.fields()
	for ok := it.First(); ok; ok = it.Next() {
		for _, f := range fields {
			if string(it.Key()) != f.name {
				continue
			}
			v, n := binary.Uvarint(it.Value())
			if n <= 0 || n != len(it.Value()) {
				return Properties{}, corruptf("sstable: bad value %x for property %q", it.Value(), f.name)
			}
			*f.v = v
		}
	}
	if err := it.Error(); err != nil {
		return Properties{}, err
	}
	return p, nil
}

func (p Properties) String() string {
	return fmt.Sprintf("entries=%d deletions=%d seqs=[%d,%d] raw-keys=%d raw-values=%d data-blocks=%d data=%d index=%d filter=%d",
		p.NumEntries, p.NumDeletions, p.SmallestSeq, p.LargestSeq, p.RawKeySize, p.RawValueSize,
		p.NumDataBlocks, p.DataSize, p.IndexSize, p.FilterSize)
}
