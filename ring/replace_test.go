package ring

import (
	"slices"
	"testing"
)

// A member that takes another's tokens (a replacement) is placed where
// that member was: every preference list is the old one with the old ID
// swapped for the new, whatever the IDs' sort order.
func TestReplacementTakesTheOldMembersPlace(t *testing.T) {
	cfg := Config{Partitions: 512, Replicas: 3}
	for _, old := range []string{"node-00", "node-02", "node-04"} {
		before := mustNew(t, cfg, nodes(5))
		var ms []Member
		for _, m := range nodes(5) {
			if m.ID == old {
				m = Member{ID: "zz-new", Tokens: old, State: StateNormal}
			}
			ms = append(ms, m)
		}
		after := mustNew(t, cfg, ms)
		moved := 0
		for p := range before.Partitions() {
			want := slices.Clone(before.Preference(p))
			for i, id := range want {
				if id == old {
					want[i] = "zz-new"
				}
			}
			if !slices.Equal(after.Preference(p), want) {
				moved++
			}
		}
		if moved != 0 {
			t.Errorf("replacing %s: %d of %d partitions placed differently", old, moved, before.Partitions())
		}
	}
}
