//go:build race

package hostile

// raceEnabled: the race detector makes sync.Pool drop items on purpose and
// slows the node several times over, so replies pile up that a normal
// build never holds: heap bounds are checked only without it (see
// checkHeapBound).
const raceEnabled = true
