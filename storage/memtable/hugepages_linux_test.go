package memtable

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
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
	t.Skipf("/proc/self/smaps shows no VmFlags for %#x (a sandboxed kernel?): cannot see the advice", a)
	return nil
}

// TestLargeMemtablesAskForHugePages checks that the arena and the index of
// a memtable of the server's size sit in mappings advised MADV_HUGEPAGE
// ("hg" in smaps), and that Release withdraws the advice ("nh").
func TestLargeMemtablesAskForHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skipf("this kernel has no transparent huge pages (%v): madvise refuses the advice", err)
	}
	if hugePageSize == 0 {
		t.Skip("GODEBUG=disablethp=1 is set: memtables ask for no huge pages")
	}
	m := NewIndexed(64 << 20)
	mid := func(p unsafe.Pointer, n int) uintptr { return uintptr(p) + uintptr(n/2) }
	regions := []struct {
		what string
		at   uintptr
	}{
		{"arena", mid(memoryOf(m.arena))},
		{"index", mid(memoryOf(m.index))},
	}
	for _, c := range regions {
		if flags := vmFlags(t, c.at); !slices.Contains(flags, "hg") {
			t.Errorf("the middle of a 64 MiB memtable's %s is not advised for huge pages: VmFlags %v", c.what, flags)
		}
	}
	m.Release()
	for _, c := range regions {
		if flags := vmFlags(t, c.at); slices.Contains(flags, "hg") || !slices.Contains(flags, "nh") {
			t.Errorf("after Release the middle of the %s is still advised for huge pages: VmFlags %v", c.what, flags)
		}
	}
	runtime.KeepAlive(m)
}

func TestGodebugDisablesTHP(t *testing.T) {
	for _, c := range []struct {
		godebug string
		off     bool
	}{
		{"", false},
		{"disablethp=1", true},
		{"gctrace=1,disablethp=1", true},
		{"disablethp=0", false},
		{"disablethp=1,disablethp=0", false},
		{"xdisablethp=1", false},
		{" disablethp=1 ", true},
	} {
		if got := godebugDisablesTHP(c.godebug); got != c.off {
			t.Errorf("GODEBUG=%q: disables THP %v, want %v", c.godebug, got, c.off)
		}
	}
}
