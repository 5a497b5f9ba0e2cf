package memtable

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// vmFlags returns the VmFlags of the mapping of this process that holds
// address a, from /proc/self/smaps.
func vmFlags(t *testing.T, a uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps (%v): cannot see the advice", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inside := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 && strings.IndexByte(line, ':') > strings.IndexByte(line, ' ') {
			inside = lo <= a && a < hi
			continue
		}
		if inside && strings.HasPrefix(line, "VmFlags:") {
			return strings.Fields(strings.TrimPrefix(line, "VmFlags:"))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("no mapping holds %#x", a)
	return nil
}

func hasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if g == f {
			return true
		}
	}
	return false
}

// TestLargeMemtablesAskForHugePages checks that the arena and the index of
// a memtable of the server's size sit in mappings advised MADV_HUGEPAGE
// ("hg" in smaps).
func TestLargeMemtablesAskForHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skipf("this kernel has no transparent huge pages (%v): madvise refuses the advice", err)
	}
	m := NewIndexed(64 << 20)
	mid := func(p unsafe.Pointer, n int) uintptr { return uintptr(p) + uintptr(n/2) }
	for _, c := range []struct {
		what string
		at   uintptr
	}{
		{"arena", mid(unsafe.Pointer(unsafe.SliceData(m.arena)), len(m.arena))},
		{"index", mid(unsafe.Pointer(unsafe.SliceData(m.index)), 8*len(m.index))},
	} {
		if flags := vmFlags(t, c.at); !hasFlag(flags, "hg") {
			t.Errorf("the middle of a 64 MiB memtable's %s is not advised for huge pages: VmFlags %v", c.what, flags)
		}
	}
	runtime.KeepAlive(m)
}
