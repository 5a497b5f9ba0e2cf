package ring

import (
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
)

// Defaults for the zero fields of Config.
const (
	DefaultPartitions      = 1024
	DefaultReplicas        = 3
	DefaultVNodesPerWeight = 64
)

// Limits that keep a ring's memory bounded (Q*N preference entries and
// Weight*VNodesPerWeight tokens per member).
const (
	MaxPartitions      = 1 << 20
	MaxWeight          = 1000
	MaxVNodesPerWeight = 1024
)

// ErrInvalid is wrapped by every error New returns for a bad Config or
// member list, so callers can tell operator mistakes from other failures.
var ErrInvalid = errors.New("invalid ring")

// Config describes how the ring is cut and replicated. The zero value is
// usable: every zero field takes its default.
type Config struct {
	// Partitions is Q, the number of equal slices of the token space. A
	// power of two, fixed when the cluster is created, because changing it
	// changes every key's partition. Default 1024.
	Partitions int
	// Replicas is N, the length of each preference list. Default 3. When
	// ReplicasPerDC is set it may be left 0; otherwise it must equal the sum.
	Replicas int
	// ReplicasPerDC, when non-empty, asks for that many replicas in each
	// named DC. Every member's DC must be listed (a count of 0 keeps a DC
	// free of replicas), so that a typo in a member's DC is an error rather
	// than an unreplicated DC. A listed DC may have no members yet (a
	// multi-DC cluster starts one node at a time): its share of each
	// preference list is empty until it has one.
	ReplicasPerDC map[string]int
	// VNodesPerWeight is how many virtual-node tokens a member of weight 1
	// places on the ring. More tokens smooth the hashing and spread a
	// joining node's takeover over more donors, at the cost of a longer
	// walk per partition. Default 64.
	VNodesPerWeight int
	// Next, when set, is the replication the cluster is moving to
	// (ringkv set-replicas): Future places every partition with it, so the
	// nodes that will hold the extra replicas are pending owners until the
	// change is complete; then it becomes Replicas and ReplicasPerDC.
	Next *Replication
}

// Replication is a replica count: N, or N per datacenter.
type Replication struct {
	Replicas      int
	ReplicasPerDC map[string]int
}

func (rp Replication) clone() Replication {
	rp.ReplicasPerDC = maps.Clone(rp.ReplicasPerDC)
	return rp
}

// Replication returns cfg's replication.
func (cfg Config) Replication() Replication {
	return Replication{Replicas: cfg.Replicas, ReplicasPerDC: maps.Clone(cfg.ReplicasPerDC)}
}

// WithReplication returns cfg replicated as rp, with no change pending.
func (cfg Config) WithReplication(rp Replication) Config {
	cfg.Replicas, cfg.ReplicasPerDC, cfg.Next = rp.Replicas, maps.Clone(rp.ReplicasPerDC), nil
	return cfg
}

// String renders a replication as set-replicas takes it: "3" or
// "dc1:3,dc2:2".
func (rp Replication) String() string {
	if len(rp.ReplicasPerDC) == 0 {
		return fmt.Sprint(rp.Replicas)
	}
	var b []byte
	for i, dc := range slices.Sorted(maps.Keys(rp.ReplicasPerDC)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%s:%d", dc, rp.ReplicasPerDC[dc])
	}
	return string(b)
}

// withDefaults returns cfg with zero fields filled in and Replicas derived
// from ReplicasPerDC; the map is copied so the ring never aliases the
// caller's.
func (cfg Config) withDefaults() Config {
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.VNodesPerWeight == 0 {
		cfg.VNodesPerWeight = DefaultVNodesPerWeight
	}
	if len(cfg.ReplicasPerDC) > 0 {
		cfg.ReplicasPerDC = maps.Clone(cfg.ReplicasPerDC)
		if cfg.Replicas == 0 {
			for _, n := range cfg.ReplicasPerDC {
				cfg.Replicas += n
			}
		}
	} else {
		cfg.ReplicasPerDC = nil
		if cfg.Replicas == 0 {
			cfg.Replicas = DefaultReplicas
		}
	}
	if cfg.Next != nil {
		n := cfg.WithReplication(*cfg.Next).withDefaults()
		cfg.Next = &Replication{Replicas: n.Replicas, ReplicasPerDC: n.ReplicasPerDC}
	}
	return cfg
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// validate checks a defaulted config against the member list.
func (cfg Config) validate(members []Member) error {
	q := cfg.Partitions
	if q < 1 || q > MaxPartitions || bits.OnesCount(uint(q)) != 1 {
		return invalid("partitions = %d: must be a power of two between 1 and %d", q, MaxPartitions)
	}
	if cfg.VNodesPerWeight < 1 || cfg.VNodesPerWeight > MaxVNodesPerWeight {
		return invalid("vnodes per weight = %d: must be between 1 and %d", cfg.VNodesPerWeight, MaxVNodesPerWeight)
	}
	if cfg.Replicas < 1 {
		return invalid("replicas = %d: must be at least 1", cfg.Replicas)
	}
	if cfg.Next != nil {
		if err := cfg.WithReplication(*cfg.Next).validate(members); err != nil {
			return fmt.Errorf("the replication being moved to: %w", err)
		}
	}

	seen := make(map[string]bool, len(members))
	dcs := map[string]bool{}
	for _, m := range members {
		switch {
		case m.ID == "":
			return invalid("member with empty ID")
		case seen[m.ID]:
			return invalid("duplicate member ID %q", m.ID)
		case m.Weight < 0 || m.Weight > MaxWeight:
			return invalid("member %q: weight %d must be between 1 and %d", m.ID, m.Weight, MaxWeight)
		case int(m.State) >= len(stateNames):
			return invalid("member %q: unknown state %d", m.ID, m.State)
		}
		seen[m.ID] = true
		dcs[m.DC] = true
	}

	if cfg.ReplicasPerDC == nil {
		return nil
	}
	sum := 0
	for _, dc := range slices.Sorted(maps.Keys(cfg.ReplicasPerDC)) {
		n := cfg.ReplicasPerDC[dc]
		if n < 0 {
			return invalid("replicas in DC %q = %d: must not be negative", dc, n)
		}
		sum += n
	}
	if cfg.Replicas != sum {
		return invalid("replicas = %d but replicas per DC sum to %d; leave replicas 0 or make them agree", cfg.Replicas, sum)
	}
	for _, dc := range slices.Sorted(maps.Keys(dcs)) {
		if _, ok := cfg.ReplicasPerDC[dc]; !ok {
			return invalid("DC %q has members but no replica count; add it to replicas per DC (0 is allowed)", dc)
		}
	}
	return nil
}
