package main

import (
	"runtime"
	"syscall"
	"time"
)

// cpuTime returns the CPU time f takes on its thread, so that other work
// on the machine does not count (f must not start goroutines).
func cpuTime(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const rusageThread = 1 // RUSAGE_THREAD
	var a, b syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &a); err != nil {
		start := time.Now()
		f()
		return time.Since(start)
	}
	f()
	if err := syscall.Getrusage(rusageThread, &b); err != nil {
		return 0
	}
	return time.Duration(b.Utime.Nano() + b.Stime.Nano() - a.Utime.Nano() - a.Stime.Nano())
}
