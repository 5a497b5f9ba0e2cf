package replica

import (
	"testing"

	"github.com/ringkv/ringkv/version"
)

// A retried write (the same ID, value and context) that this replica
// already holds is not stamped again, whether blind or with a context, and
// whether it arrives alone or in a batch; a merge of another replica's
// attempt folds into the one held.
func TestRetriedWriteIsStoredOnce(t *testing.T) {
	a := openStore(t, "a")
	key := []byte("k")
	for _, w := range []Write{
		{Key: key, Value: []byte("blind"), ID: 11},
		{Key: key, Value: []byte("ctx"), Ctx: version.Clock{}, ID: 12},
		{Key: key, Deleted: true, ID: 13},
	} {
		first, err := a.CoordinateThen(w, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Ctx = w.Ctx.Clone() // as a new request would carry it
		again, err := a.CoordinateThen(w, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Equal(first) {
			t.Fatalf("retry of %q was stamped again: %v after %v", w.Value, again, first)
		}
		objs, errs, err := a.CoordinateBatch([]Write{{Key: []byte("other"), Value: []byte("x")}, w}, 3, nil)
		if err != nil || errs[1] != nil || !objs[1].Equal(first) {
			t.Fatalf("retry in a batch: %v, %v, %v", objs[1], errs[1], err)
		}
		stored, err := a.Get(key)
		if err != nil || !stored.Equal(first) {
			t.Fatalf("stored %v, want %v (%v)", stored, first, err)
		}
	}
	if got := a.RetriesRecognized(); got != 6 {
		t.Fatalf("RetriesRecognized = %d, want 6 (two attempts again of each of three writes)", got)
	}
	// A blind write the coordinator stamps with a context it learned
	// (which covers the held attempt) is still a retry.
	held, _ := a.Get(key)
	again, err := a.CoordinateThen(Write{Key: key, Deleted: true, ID: 13, Ctx: held.Context.Clone(), Blind: true}, 5, nil)
	if err != nil || !again.Equal(held) || a.RetriesRecognized() != 7 {
		t.Fatalf("a blind retry stamped with a learned context: %v (held %v), %v, %d recognized", again, held, err, a.RetriesRecognized())
	}
	// Without Blind, a write whose context covers the held sibling is a
	// new write.
	if after, err := a.CoordinateThen(Write{Key: key, Deleted: true, ID: 13, Ctx: held.Context.Clone()}, 6, nil); err != nil || after.Equal(held) {
		t.Fatalf("a write over the held attempt, reusing its ID: %v, %v", after, err)
	}

	// Replica c, which holds a's state before the delete (write 12),
	// coordinates another attempt of the delete (write 13): once that
	// reaches a, a holds the delete once.
	other := openStore(t, "c")
	if _, _, err := other.Apply(key, &version.Object{Context: version.Clock{"a": 2}, Siblings: []version.Sibling{{Dot: version.Dot{Node: "a", Counter: 2}, Value: []byte("ctx"), WriteID: 12}}}); err != nil {
		t.Fatal(err)
	}
	attempt, err := other.CoordinateThen(Write{Key: key, Deleted: true, ID: 13}, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	merged, _, err := a.Apply(key, attempt)
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Siblings) != 1 || !merged.Siblings[0].Deleted || merged.Siblings[0].WriteID != 13 {
		t.Fatalf("after the second attempt met the first: %v", merged)
	}
	if !merged.Context.Covers(attempt.Siblings[0].Dot) {
		t.Fatalf("the second attempt's dot %v is not covered: %v", attempt.Siblings[0].Dot, merged)
	}
}
