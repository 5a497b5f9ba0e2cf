package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Flags win over RINGKV_<FLAG> variables, which win over the config file.
func TestSettingsPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ringkv.conf")
	os.WriteFile(path, []byte(`# a node
node-id = from-file
data-dir: /from/file
http-addr = "127.0.0.1:8090"
replicas = 5
`), 0o600)
	var nodeID, dataDir, httpAddr, respAddr string
	var replicas int
	cmd := &cobra.Command{Use: "server", RunE: func(*cobra.Command, []string) error { return nil }}
	f := cmd.Flags()
	f.StringVar(&nodeID, "node-id", "", "")
	f.StringVar(&dataDir, "data-dir", "", "")
	f.StringVar(&httpAddr, "http-addr", "127.0.0.1:8080", "")
	f.StringVar(&respAddr, "resp-addr", "127.0.0.1:6379", "")
	f.IntVar(&replicas, "replicas", 3, "")
	t.Setenv("RINGKV_DATA_DIR", "/from/env")
	t.Setenv("RINGKV_REPLICAS", "4")
	if err := f.Parse([]string{"--replicas", "2"}); err != nil {
		t.Fatal(err)
	}
	if err := applySettings(cmd, path); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{"node-id": nodeID, "data-dir": dataDir, "http-addr": httpAddr, "resp-addr": respAddr, "replicas": replicas}
	want := map[string]any{"node-id": "from-file", "data-dir": "/from/env", "http-addr": "127.0.0.1:8090", "resp-addr": "127.0.0.1:6379", "replicas": 2}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}

	// Unknown settings and bad values are errors that name them.
	bad := filepath.Join(t.TempDir(), "bad.conf")
	os.WriteFile(bad, []byte("no-such-flag = 1\n"), 0o600)
	if err := applySettings(cmd, bad); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("unknown setting: %v", err)
	}
	cmd2 := &cobra.Command{Use: "server"}
	cmd2.Flags().IntVar(&replicas, "replicas", 3, "")
	t.Setenv("RINGKV_REPLICAS", "three")
	if err := applySettings(cmd2, ""); err == nil || !strings.Contains(err.Error(), "RINGKV_REPLICAS") {
		t.Fatalf("bad environment value: %v", err)
	}
}

// The server's help lists every setting with its default.
func TestServerHelpShowsDefaults(t *testing.T) {
	root := newRootCmd()
	var out strings.Builder
	root.SetOut(&out)
	root.SetArgs([]string{"server", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`--replicas int`, `(default 3)`, `--auth-file`, `--tls-cert`, `--peer-tls-ca`, `--config`, `--log-format string`, `(default "text")`, `RINGKV_DATA_DIR`, `--shutdown-timeout`, `--read-repair-chance float`, `(default 0.1)`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ringkv server --help lacks %q", want)
		}
	}
}

// --read-repair-chance takes a fraction of reads; 0 turns read repair reads
// off (the server's option for never), anything outside 0..1 is refused.
func TestReadRepairChanceOption(t *testing.T) {
	for _, tc := range []struct {
		flag, want float64
		bad        bool
	}{
		{0.1, 0.1, false}, {1, 1, false}, {0, -1, false},
		{-0.5, 0, true}, {1.5, 0, true}, {math.NaN(), 0, true},
	} {
		got, err := readRepairChanceOption(tc.flag)
		if (err != nil) != tc.bad || !tc.bad && got != tc.want {
			t.Errorf("--read-repair-chance %v: %v, %v; want %v (refused: %v)", tc.flag, got, err, tc.want, tc.bad)
		}
	}
}
