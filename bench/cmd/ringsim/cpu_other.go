//go:build !linux

package main

import "time"

// cpuTime returns the wall time of f (thread CPU time is read on Linux
// only).
func cpuTime(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
