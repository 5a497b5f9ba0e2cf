package faults

import (
	"testing"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/coordinator"
)

// elasticSets is a sets run in which one node joins and one member is
// decommissioned during the workload, under kills (the failure detector
// told), restarts and partitions, with hinted handoff and anti-entropy.
func elasticSets(seed int64) Config {
	return Config{Seed: seed, Workload: Sets, Nodes: 5, Keys: 16, Partitions: 16, Duration: 2 * time.Second,
		R: coordinator.Quorum, W: coordinator.Quorum,
		Faults:  Faults{Kill: true, MarkDown: true, Partition: true, Interval: 150 * time.Millisecond},
		Handoff: FastHandoff(300 * time.Millisecond),
		Moves:   &Moves{Join: 1, Decommission: 1}}
}

func checkElastic(res *Result) []Violation {
	vs := CheckSetAdds(res.History.Ops(), res.Final)
	vs = append(vs, CheckConverged(res.Replicas)...)
	return append(vs, CheckOwnersHold(res)...)
}

// Joins and decommissions under faults: no acknowledged add is lost, the
// replicas converge, and every key ends held by exactly its owners in the
// final ring (the new owners got their partitions; the old ones handed
// them over and dropped their copies).
func TestElasticSetsQuorum(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed int64) {
		res := Run(t, withDuration(elasticSets(seed)))
		Report(t, res, checkElastic(res))
		t.Logf("%s; moves settled in %v", res.History.Summary(), res.Moves.Wait.Round(time.Millisecond))
		if testing.Verbose() {
			t.Logf("events:\n%s", res.History.Format("none"))
		}
	})
}

// The cluster goes from N=3 to N=4 while a node joins and one leaves,
// under the same faults: the fourth replicas are streamed, every key ends
// on exactly its four owners.
func TestElasticReplicasUp(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed int64) {
		c := elasticSets(seed)
		c.Moves.Replicas = 4
		res := Run(t, withDuration(c))
		Report(t, res, checkElastic(res))
		if n := res.Cluster.View.Ring().Replicas(); n != 4 {
			t.Errorf("N = %d at the end", n)
		}
		t.Logf("%s; moves settled in %v", res.History.Summary(), res.Moves.Wait.Round(time.Millisecond))
	})
}

// movesAlone is the elastic schedule with two decommissions, and nothing
// but the moves to put data where it belongs: no anti-entropy rounds, no
// read repair.
func movesAlone(seed int64) Config {
	c := elasticSets(seed)
	c.Moves = &Moves{Join: 1, Decommission: 2, Deadline: 5 * time.Second}
	c.AntiEntropy = &antientropy.Options{Interval: time.Hour, Rate: -1, Timeout: time.Second}
	c.ReadRepairChance = -1
	return c
}

// The moves alone put every key on exactly its owners: the canary below
// runs this schedule with a planted bug.
func TestElasticMovesAlone(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed int64) {
		res := Run(t, withDuration(movesAlone(seed)))
		Report(t, res, checkElastic(res))
		t.Logf("%s; moves settled in %v", res.History.Summary(), res.Moves.Wait.Round(time.Millisecond))
	})
}

// The same schedule with moves that skip the Merkle check (gained
// partitions count as streamed without an exchange; surplus copies are
// dropped without being handed over) and no anti-entropy rounds or read
// repair to mend it afterwards: the checkers must find keys that are not
// held by their owners, or adds lost.
func TestCanaryMovesWithoutMerkleCheck(t *testing.T) {
	c := movesAlone(0)
	c.WrapSyncer = BugMovesWithoutMerkleCheck
	canaryOf(t, Run, c, checkElastic)
}
