package coordinator

import (
	"errors"
	"fmt"
	"strconv"
)

// Levels are one request's consistency levels. R and W count the nodes
// that must answer or acknowledge: primaries, and under sloppy quorum the
// fallbacks standing in for primaries that are down. PR and PW count
// primaries only. Each is a number or One, Quorum, All; Default (0) means
// the coordinator's default for R and W, and no requirement for PR and PW.
type Levels struct {
	R, W   int
	PR, PW int
}

// ErrTooFewPrimaries: pr or pw asks for more primaries than the failure
// detector says are up. The request was refused before anything was read
// or written.
var ErrTooFewPrimaries = errors.New("too few primaries up")

// ParsePrimaryLevel parses a pr or pw level: as ParseLevel, and "0" for no
// requirement (Default).
// The datacenter levels are refused: pr and pw count the key's primaries,
// wherever they are.
func ParsePrimaryLevel(s string) (int, error) {
	if s == "0" {
		return Default, nil
	}
	level, err := ParseLevel(s)
	if err == nil && isDCLevel(level) {
		return 0, fmt.Errorf("%w %q for pr or pw: they count the key's primaries in every datacenter; want a number, ONE, QUORUM or ALL", ErrBadLevel, s)
	}
	return level, err
}

// FormatLevel is the inverse of ParseLevel: ONE, QUORUM, ALL, LOCAL_ONE,
// LOCAL_QUORUM, EACH_QUORUM or the number; Default is "0".
func FormatLevel(level int) string {
	if name, ok := levelNames[level]; ok {
		return name
	}
	return strconv.Itoa(level)
}

// DefaultLevels returns the levels a request with Default levels gets: the
// configured R and W (Quorum when not configured), no primary requirement.
func (c *Coordinator) DefaultLevels() Levels {
	lv := Levels{R: c.o.R, W: c.o.W}
	if lv.R == Default {
		lv.R = Quorum
	}
	if lv.W == Default {
		lv.W = Quorum
	}
	return lv
}

// resolvePrimaries turns a pr or pw level into a count of primaries, as
// resolve does for R and W, except that Default is no requirement (0).
func resolvePrimaries(op string, level, n, placed int) (int, error) {
	if level == Default {
		return 0, nil
	}
	if isDCLevel(level) {
		return 0, fmt.Errorf("p%c: %w: %s counts per datacenter, pr and pw count primaries", op[0], ErrBadLevel, FormatLevel(level))
	}
	count, err := resolve(op, level, level, n, placed)
	if err != nil {
		return 0, fmt.Errorf("p%c: %w", op[0], err)
	}
	return count, nil
}

// checkPrimariesUp refuses a request that needs more primaries (pr or pw)
// than are up now: it could not succeed, and a write would only leave
// copies on fallbacks.
func checkPrimariesUp(op string, need, up, placed, n int) error {
	if need <= up {
		return nil
	}
	return &QuorumError{Op: op, Primaries: true, Needed: need, Answered: up, Replicas: placed, N: n, Last: ErrTooFewPrimaries}
}
