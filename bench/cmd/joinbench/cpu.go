package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTicks returns the user + system CPU time of process pid ("self" for
// this one) in clock ticks (USER_HZ, 100 per second on Linux), or -1.
func cpuTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return -1
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return u + st
}

// cpuMark is every process's CPU time at one moment of the run.
type cpuMark struct {
	at    time.Duration
	ticks map[string]int64 // by node ID, and "load" for this command
}

func markCPU(at time.Duration, nodes []*node) cpuMark {
	m := cpuMark{at: at, ticks: map[string]int64{"load": cpuTicks("self")}}
	for _, n := range nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			m.ticks[n.id] = cpuTicks(strconv.Itoa(n.cmd.Process.Pid))
		}
	}
	return m
}

// cores returns the cores process id used on average between a and b, as
// text ("–" when unknown).
func cores(a, b cpuMark, id string) string {
	ta, okA := a.ticks[id]
	tb, okB := b.ticks[id]
	if !okA {
		ta, okA = 0, okB // a process started in between
	}
	secs := (b.at - a.at).Seconds()
	if !okA || !okB || ta < 0 || tb < 0 || secs <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(tb-ta)/100/secs)
}
