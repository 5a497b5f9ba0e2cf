package memtable

import (
	"syscall"
	"unsafe"
)

// hugePageSize is the size of a transparent huge page on the platforms
// ringkv runs on (x86-64 and arm64 with 4 KiB base pages).
const hugePageSize = 2 << 20

// adviseHugePages asks the kernel to back the whole 2 MiB-aligned pages
// inside the n bytes at p with transparent huge pages (madvise
// MADV_HUGEPAGE). A memtable is read and written at random places across
// tens of MiB: with 4 KiB pages nearly every skiplist step, index probe
// and filter load also misses the TLB, and on a VM a page walk costs about
// as much as the cache miss itself. With huge pages a 64 MiB arena needs
// 32 TLB entries instead of 16,384.
//
// It is advice: the kernel may ignore it (THP "never", or built without
// THP), and nothing depends on it. The memory stays the Go heap's; the
// advice only marks the address range. Regions shorter than two huge pages
// are left alone (the tables of tests, the first small memtables).
func adviseHugePages(p unsafe.Pointer, n int) {
	if n < 2*hugePageSize {
		return
	}
	base := uintptr(p)
	start := (base + hugePageSize - 1) &^ (hugePageSize - 1)
	end := (base + uintptr(n)) &^ (hugePageSize - 1)
	if end <= start {
		return
	}
	// The error (EINVAL without THP support) changes nothing: the pages
	// stay small.
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, start-base)), end-start), syscall.MADV_HUGEPAGE)
}
