package server

import (
	"testing"
)

// RINGKV.CONFIG SET r|w takes the datacenter levels (any case) and shows
// them by name; pr and pw, which count primaries, refuse them.
func TestConnSettingsTakeDatacenterLevels(t *testing.T) {
	b := respBackend{}
	for _, c := range []struct{ name, value, want string }{
		{"w", "local_quorum", "LOCAL_QUORUM"},
		{"r", "LOCAL_ONE", "LOCAL_ONE"},
		{"w", "Each_Quorum", "EACH_QUORUM"},
	} {
		got, err := b.CheckConnSetting(c.name, c.value)
		if err != nil || got != c.want {
			t.Fatalf("SET %s %s: %q %v, want %q", c.name, c.value, got, err, c.want)
		}
	}
	for _, name := range []string{"pr", "pw"} {
		if _, err := b.CheckConnSetting(name, "LOCAL_QUORUM"); err == nil {
			t.Fatalf("SET %s LOCAL_QUORUM accepted: pr and pw count primaries", name)
		}
	}
}
