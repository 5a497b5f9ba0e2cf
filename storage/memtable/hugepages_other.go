//go:build !linux

package memtable

import "unsafe"

// adviseHugePages does nothing here: transparent huge pages and their
// madvise are Linux's.
func adviseHugePages(unsafe.Pointer, int) {}
