package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A new data directory records its format; a directory of a newer format,
// or with a damaged FORMAT file, is refused with an error that says why,
// and nothing in it is touched.
func TestDataFormatIsRecordedAndNewerOnesRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{NodeID: "n1", DataDir: dir, PeerAddr: freePeerAddr(t), RespAddr: "127.0.0.1:0", Replicas: 1}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, formatFileName))
	if err != nil || strings.TrimSpace(string(data)) != "ringkv data format 1" {
		t.Fatalf("FORMAT after the first start: %q %v", data, err)
	}
	for _, c := range []struct{ content, want string }{
		{"ringkv data format 2\n", "written by a newer ringkv"},
		{"something else\n", "not a ringkv data directory"},
	} {
		os.WriteFile(filepath.Join(dir, formatFileName), []byte(c.content), 0o644)
		before, _ := os.ReadDir(filepath.Join(dir, "engine"))
		cfg.PeerAddr = freePeerAddr(t)
		s, err := Start(cfg)
		if err == nil {
			s.Close()
			t.Fatalf("FORMAT %q: the node started", c.content)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Fatalf("FORMAT %q: %v, want %q", c.content, err, c.want)
		}
		after, _ := os.ReadDir(filepath.Join(dir, "engine"))
		if len(before) != len(after) {
			t.Fatalf("a refused start changed the engine's files (%d -> %d)", len(before), len(after))
		}
	}
	// A directory from before the file existed starts, and gets one.
	os.Remove(filepath.Join(dir, formatFileName))
	cfg.PeerAddr = freePeerAddr(t)
	if s, err = Start(cfg); err != nil {
		t.Fatalf("start without FORMAT: %v", err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, formatFileName)); err != nil {
		t.Fatalf("FORMAT not written for an older directory: %v", err)
	}
}
