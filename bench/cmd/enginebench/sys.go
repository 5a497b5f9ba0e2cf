package main

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ioWriteBytes returns write_bytes from /proc/self/io: the bytes this process
// (all its threads) caused to be sent to the storage layer. Linux counts a
// page when it becomes dirty, whether by write(2) or through a shared mmap,
// so the figure does not depend on when the kernel writes it back.
func ioWriteBytes() (int64, bool) {
	v, err := procField("/proc/self/io", "write_bytes:")
	return v, err == nil
}

// resetPeakRSS resets the kernel's RSS high-water mark (VmHWM) for this
// process ("5" > /proc/self/clear_refs).
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS returns VmHWM in bytes.
func peakRSS() (int64, bool) {
	kb, err := procField("/proc/self/status", "VmHWM:")
	return kb << 10, err == nil
}

// procField returns the first integer after prefix in a /proc file.
func procField(path, prefix string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, os.ErrNotExist
}

// dirSize walks dir and returns the space its regular files occupy on disk
// (allocated blocks, so sparse preallocated files count only what is
// written) and their apparent size.
func dirSize(dir string) (allocated, apparent int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		apparent += info.Size()
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			allocated += st.Blocks * 512
		} else {
			allocated += info.Size()
		}
		return nil
	})
	return allocated, apparent, err
}

// loadAvg returns the 1-minute load average from /proc/loadavg, or "?".
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
