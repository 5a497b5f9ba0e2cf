package version

import (
	"fmt"
	"strconv"
	"strings"
)

// An actor is the name a dot carries (Dot.Node, the keys of a Clock): who
// minted the write. It is a node ID and the node's incarnation:
//
//	node "~" incarnation   (incarnation in base 36, lower case, no leading zero)
//
// An incarnation names one life of a node's data: a node that starts on an
// empty data directory, or after a crash, takes a new random one (package
// replica), so that it never mints a dot its peers have already seen with
// different contents. A node that restarted under the same ID with the same
// actor would reuse counters, and its peers would drop its new writes as
// already seen.
//
// An actor without "~" is a legacy actor (data written before
// incarnations): incarnation 0.
const actorSep = '~'

// MaxIncarnation is the largest incarnation: incarnations are random
// numbers below 2^53, so that they survive JSON's float64 numbers.
const MaxIncarnation = 1<<53 - 1

// maxIncarnationDigits is the length of MaxIncarnation in base 36.
const maxIncarnationDigits = 11

// MaxNodeIDSize is the longest node ID whose actors fit in MaxActorSize.
const MaxNodeIDSize = MaxActorSize - 1 - maxIncarnationDigits

// Actor returns the actor of a node's incarnation: node + "~" + the
// incarnation in base 36. Incarnation 0 is the legacy actor, the node ID
// alone, so that Actor and SplitActor are inverses.
func Actor(node string, incarnation uint64) string {
	if incarnation == 0 {
		return node
	}
	return node + string(actorSep) + strconv.FormatUint(incarnation, 36)
}

// SplitActor returns the node ID and incarnation of an actor (incarnation 0
// for a legacy actor, one without "~"). ok is false when actor is not well
// formed: empty node, more than one "~", an incarnation that is not the
// canonical base-36 form of a number in 1..MaxIncarnation, or longer than
// MaxActorSize.
func SplitActor(actor string) (node string, incarnation uint64, ok bool) {
	n, inc, ok := splitActor(actor)
	if !ok {
		return "", 0, false
	}
	return actor[:n], inc, true
}

// CheckNodeID reports whether id can name a node: not empty, no "~" (the
// actor separator) and at most MaxNodeIDSize bytes.
func CheckNodeID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty node ID")
	case strings.IndexByte(id, actorSep) >= 0:
		return fmt.Errorf("node ID %q contains %q, which separates a node ID from its incarnation in version dots", id, actorSep)
	case len(id) > MaxNodeIDSize:
		return fmt.Errorf("node ID of %d bytes is longer than the limit of %d", len(id), MaxNodeIDSize)
	}
	return nil
}

// validActor reports whether a is a well-formed actor (see SplitActor).
func validActor[T string | []byte](a T) bool {
	_, _, ok := splitActor(a)
	return ok
}

// splitActor is SplitActor returning the length of the node part; it
// works on bytes too and never allocates.
func splitActor[T string | []byte](a T) (nodeLen int, incarnation uint64, ok bool) {
	if len(a) == 0 || len(a) > MaxActorSize {
		return 0, 0, false
	}
	sep := -1
	for i := 0; i < len(a); i++ {
		if a[i] == actorSep {
			if sep >= 0 {
				return 0, 0, false
			}
			sep = i
		}
	}
	if sep < 0 {
		return len(a), 0, true
	}
	digits := len(a) - sep - 1
	if sep == 0 || digits == 0 || digits > maxIncarnationDigits || a[sep+1] == '0' {
		return 0, 0, false
	}
	var v uint64
	for i := sep + 1; i < len(a); i++ {
		c := a[i]
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'z':
			d = uint64(c-'a') + 10
		default:
			return 0, 0, false
		}
		v = v*36 + d // 11 digits: below 36^11 < 2^57, no overflow
	}
	if v > MaxIncarnation {
		return 0, 0, false
	}
	return sep, v, true
}
