//go:build race

package version

// raceEnabled: allocation counts are checked without the race detector,
// which instruments and may move things to the heap.
const raceEnabled = true
