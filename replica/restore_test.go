package replica

import (
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
)

// Reincarnate replaces the incarnation, whether the store it came from
// was shut down cleanly or not, and the next Open keeps the new one;
// writes stamped after it carry the new actor.
func TestReincarnate(t *testing.T) {
	for _, clean := range []bool{true, false} {
		fs := vfs.NewMem()
		db := openDB(t, fs)
		s := openNode(t, db, "n1")
		orig := s.Incarnation()
		if _, err := s.Coordinate([]byte("k"), nil, []byte("v"), false, 1); err != nil {
			t.Fatal(err)
		}
		if clean {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		old, inc, err := Reincarnate(db)
		if err != nil {
			t.Fatal(err)
		}
		if old != orig || inc == orig || inc == 0 {
			t.Fatalf("clean=%v: reincarnate: old %d new %d, the store had %d", clean, old, inc, orig)
		}
		s2 := openNode(t, db, "n1")
		if s2.Incarnation() != inc || s2.Minted() != "" {
			t.Fatalf("clean=%v: open after reincarnate: incarnation %d (minted %q), want %d kept", clean, s2.Incarnation(), s2.Minted(), inc)
		}
		obj, err := s2.Coordinate([]byte("k"), nil, []byte("v2"), false, 1)
		if err != nil {
			t.Fatal(err)
		}
		if obj.Context[s2.Actor()] != 1 {
			t.Fatalf("clean=%v: first write of the new incarnation: context %v", clean, obj.Context)
		}
		s2.Close()
		db.Close()
	}
	// No record at all (a new directory): old is 0.
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	if old, inc, err := Reincarnate(db); err != nil || old != 0 || inc == 0 {
		t.Fatalf("reincarnate an empty engine: %d %d %v", old, inc, err)
	}
}
