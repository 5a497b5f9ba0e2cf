package ring

import (
	"fmt"
	"slices"
)

// Move is one partition whose preference list differs between two rings.
type Move struct {
	Partition int
	Old, New  []string // preference lists, primary first
}

// Gained returns the nodes that replicate the partition in New but not in
// Old: they must receive its data.
func (m Move) Gained() []string { return missingFrom(m.New, m.Old) }

// Lost returns the nodes that replicate the partition in Old but not in
// New: they may drop its data once the gainers have it.
func (m Move) Lost() []string { return missingFrom(m.Old, m.New) }

// PrimaryChanged reports whether the partition has a new primary.
func (m Move) PrimaryChanged() bool {
	return first(m.Old) != first(m.New)
}

// Diff returns, in partition order, every partition whose preference list
// differs between old and new, including lists that only changed order (a
// new primary moves no data but changes who coordinates). It panics if the
// rings have different partition counts: Q is fixed for a cluster's life, so
// that is a programming error, not a membership change.
func Diff(old, new *Ring) []Move {
	if old.Partitions() != new.Partitions() {
		panic(fmt.Sprintf("ring.Diff: rings have %d and %d partitions", old.Partitions(), new.Partitions()))
	}
	var moves []Move
	for p := range old.prefs {
		if !slices.Equal(old.prefs[p], new.prefs[p]) {
			moves = append(moves, Move{Partition: p, Old: old.prefs[p], New: new.prefs[p]})
		}
	}
	return moves
}

func missingFrom(a, b []string) []string {
	var out []string
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}

func first(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}
