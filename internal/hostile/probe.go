package hostile

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ProbeDeadline is how long a well-behaved client's command may take
// during an attack.
const ProbeDeadline = 2 * time.Second

// Probe is a well-behaved Redis client that keeps writing and reading a
// key while an attack runs, counting failures and the slowest answer.
type Probe struct {
	rc   *redis.Client
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	ops      int
	failures []string
	slowest  time.Duration
}

// StartProbe connects to the Redis-protocol address addr (one pooled
// connection, made before it returns, so a connection limit reached later
// does not shut it out) and starts its loop.
func StartProbe(addr string) (*Probe, error) {
	rc := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MinIdleConns: 1, MaxRetries: -1,
		DialTimeout: ProbeDeadline, ReadTimeout: ProbeDeadline, WriteTimeout: ProbeDeadline})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.Ping(ctx).Err(); err != nil {
		rc.Close()
		return nil, fmt.Errorf("probe: first PING: %w", err)
	}
	p := &Probe{rc: rc, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p, nil
}

func (p *Probe) loop() {
	defer close(p.done)
	for i := 0; ; i++ {
		if i > 0 {
			select {
			case <-p.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), ProbeDeadline)
		key, val := "probe", strconv.Itoa(i)
		err := p.rc.Set(ctx, key, val, 0).Err()
		var got string
		if err == nil {
			got, err = p.rc.Get(ctx, key).Result()
			if err == nil && got != val {
				err = fmt.Errorf("GET %s = %q, want %q", key, got, val)
			}
		}
		cancel()
		d := time.Since(start)
		p.mu.Lock()
		p.ops++
		p.slowest = max(p.slowest, d)
		if err != nil && len(p.failures) < 10 {
			p.failures = append(p.failures, err.Error())
		}
		p.mu.Unlock()
	}
}

// ProbeResult is what a probe saw.
type ProbeResult struct {
	Ops      int
	Failures []string
	Slowest  time.Duration
}

// OK reports whether every command was answered, within ProbeDeadline,
// and there was at least one.
func (r ProbeResult) OK() bool { return r.Ops > 0 && len(r.Failures) == 0 && r.Slowest < ProbeDeadline }

func (r ProbeResult) String() string {
	return fmt.Sprintf("%d SET+GET rounds, slowest %v, failures %q", r.Ops, r.Slowest.Round(time.Millisecond), r.Failures)
}

// Stop ends the probe and returns what it saw.
func (p *Probe) Stop() ProbeResult {
	close(p.stop)
	<-p.done
	p.rc.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProbeResult{Ops: p.ops, Failures: p.failures, Slowest: p.slowest}
}

// Memory is a measurement of this process's memory.
type Memory struct {
	LiveHeap uint64 // HeapInuse after a GC: what is held, not garbage
	Sys      uint64 // bytes obtained from the OS by the Go runtime
	RSS      uint64 // VmRSS (0 where /proc is missing)
}

func (m Memory) String() string {
	return fmt.Sprintf("live heap %.1f MiB, sys %.1f MiB, rss %.1f MiB", mib(m.LiveHeap), mib(m.Sys), mib(m.RSS))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// Measure collects garbage and measures.
func Measure() Memory {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Memory{LiveHeap: ms.HeapInuse, Sys: ms.Sys, RSS: rss()}
}

func rss() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Growth is how much the live heap grew from before to during, 0 if it shrank.
func Growth(before, during Memory) uint64 {
	if during.LiveHeap < before.LiveHeap {
		return 0
	}
	return during.LiveHeap - before.LiveHeap
}
