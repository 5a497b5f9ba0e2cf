//go:build !linux

package memtable

import "unsafe"

// adviseHugePages and withdrawHugePages do nothing here: transparent huge
// pages and their madvise are Linux's.
func adviseHugePages(unsafe.Pointer, int) {}

func withdrawHugePages(unsafe.Pointer, int) {}
