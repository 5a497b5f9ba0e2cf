package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dataFormat is the version of a data directory: its layout and every
// file in it that carries no version of its own (commit log, manifest,
// ring state, hints, replica metadata). Tables and objects carry their own
// (sstable.FormatVersion, the object encoding's format byte). A release
// that changes any of them so that an older binary could misread it bumps
// this number; the older binary then refuses the directory instead.
const dataFormat = 1

// formatFileName is the file in the data directory that records its
// format: "ringkv data format N".
const formatFileName = "FORMAT"

const formatPrefix = "ringkv data format "

// checkDataFormat refuses a data directory written in a format this
// binary cannot read, and records the format of a new one (a directory
// from before the file existed is format 1).
func checkDataFormat(dir string) error {
	path := filepath.Join(dir, formatFileName)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return writeDataFormat(dir)
	case err != nil:
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	text := strings.TrimSpace(string(data))
	v, ok := strings.CutPrefix(text, formatPrefix)
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 1 {
		return fmt.Errorf("data directory %s: %s holds %q, not %q and a number: not a ringkv data directory, or a damaged one", dir, formatFileName, text, formatPrefix)
	}
	if n > dataFormat {
		return fmt.Errorf("data directory %s is in data format %d, written by a newer ringkv; this binary reads format %d and older: run the newer binary on it (a downgrade needs a backup taken before the upgrade)", dir, n, dataFormat)
	}
	return nil
}

func writeDataFormat(dir string) error {
	path := filepath.Join(dir, formatFileName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("data directory %s: record its format: %w", dir, err)
	}
	_, err = fmt.Fprintf(f, "%s%d\n", formatPrefix, dataFormat)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = fsyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("data directory %s: record its format: %w", dir, err)
	}
	return nil
}

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
