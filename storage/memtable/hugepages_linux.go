package memtable

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// hugePageSize is the kernel's transparent huge page size (2 MiB on x86-64
// and on arm64 with 4 KiB pages), or 0 when memtables must not ask for huge
// pages: GODEBUG=disablethp=1, the Go runtime's switch for turning them
// off, turns off this advice too.
var hugePageSize = func() uintptr {
	if godebugDisablesTHP(os.Getenv("GODEBUG")) {
		return 0
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n&(n-1) == 0 {
			return uintptr(n)
		}
	}
	return 2 << 20
}()

// godebugDisablesTHP reports whether a GODEBUG value sets disablethp=1 (the
// last setting of a name wins, as in the runtime).
func godebugDisablesTHP(godebug string) bool {
	off := false
	for _, kv := range strings.Split(godebug, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(kv), "disablethp="); ok {
			off = v == "1"
		}
	}
	return off
}

// adviseHugePages asks the kernel to back the whole huge pages inside the
// n bytes at p with transparent huge pages (madvise MADV_HUGEPAGE). A
// memtable is read and written at random places across tens of MiB: with
// 4 KiB pages nearly every skiplist step, index probe and filter load also
// misses the TLB, and on a VM a page walk costs about as much as the cache
// miss itself. With huge pages a 64 MiB arena needs 32 TLB entries instead
// of 16,384.
//
// It is advice: the kernel may ignore it (THP "never", or built without
// THP), and nothing depends on it. The memory stays the Go heap's; the
// advice only marks the address range, until withdrawHugePages. Regions
// shorter than two huge pages are left alone (the tables of tests, small
// memtables, the fingers of a 64 MiB memtable).
func adviseHugePages(p unsafe.Pointer, n int) { madviseInterior(p, n, syscall.MADV_HUGEPAGE) }

// withdrawHugePages undoes adviseHugePages for a memtable that will not be
// used again. Without it the range would stay advised after the garbage
// collector frees it: the runtime returns freed heap to the OS in small
// pieces, and the kernel's background collapsing could rebuild whole huge
// pages there for whatever the heap puts in it next, holding memory the
// runtime thinks it gave back.
func withdrawHugePages(p unsafe.Pointer, n int) { madviseInterior(p, n, syscall.MADV_NOHUGEPAGE) }

func madviseInterior(p unsafe.Pointer, n int, advice int) {
	hp := hugePageSize
	if hp == 0 || uintptr(n) < 2*hp {
		return
	}
	base := uintptr(p)
	start := (base + hp - 1) &^ (hp - 1)
	end := (base + uintptr(n)) &^ (hp - 1)
	if end <= start {
		return
	}
	// The error (EINVAL without THP support) changes nothing: the pages
	// stay small.
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, start-base)), end-start), advice)
}
