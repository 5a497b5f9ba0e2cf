package ring

import (
	"fmt"
	"strings"
)

// State is a member's place in its ring lifecycle. Only Normal and Leaving
// members own partitions: a Joining member is still receiving data and must
// not be asked for it, and a Leaving member keeps serving until its
// partitions have been streamed away and it is marked Left.
type State uint8

const (
	// StateJoining: announced, but owns nothing yet.
	StateJoining State = iota
	// StateNormal: owns partitions.
	StateNormal
	// StateLeaving: still owns partitions while they are handed off.
	StateLeaving
	// StateLeft: decommissioned; owns nothing and is kept only so the
	// departure is remembered.
	StateLeft
)

var stateNames = [...]string{
	StateJoining: "joining",
	StateNormal:  "normal",
	StateLeaving: "leaving",
	StateLeft:    "left",
}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ParseState is the inverse of String; case is ignored.
func ParseState(s string) (State, error) {
	for i, name := range stateNames {
		if strings.EqualFold(s, name) {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("ring: unknown member state %q (want joining, normal, leaving or left)", s)
}

// ownsPartitions reports whether members in state s are placed on the ring.
func (s State) ownsPartitions() bool {
	return s == StateNormal || s == StateLeaving
}

// Member is one physical node as the ring sees it.
type Member struct {
	// ID names the node and seeds its virtual-node tokens, so it must be
	// stable for the node's lifetime.
	ID string
	// Weight scales the node's share of the data; 0 means 1.
	Weight int
	// DC and Rack are failure domains. Replicas of a partition go to
	// distinct racks where possible; ReplicasPerDC counts are per DC.
	DC, Rack string
	State    State
	// Tokens, if set, is the ID whose virtual-node tokens this member
	// takes instead of its own: a node that replaces a dead one (ringkv
	// server --replace) is placed where it was.
	Tokens string
}

// tokenSeed is the ID that seeds the member's tokens.
func (m Member) tokenSeed() string {
	if m.Tokens != "" {
		return m.Tokens
	}
	return m.ID
}

func (m Member) weight() int {
	if m.Weight == 0 {
		return 1
	}
	return m.Weight
}

// rackKey names the member's rack as a failure domain. Racks are scoped by
// DC ("r1" in two DCs are two racks), and a member without a rack is a
// failure domain of its own, so an unconfigured cluster behaves as if every
// node were on its own rack.
func (m Member) rackKey() string {
	if m.Rack == "" {
		return "node\x00" + m.ID
	}
	return "rack\x00" + m.DC + "\x00" + m.Rack
}
