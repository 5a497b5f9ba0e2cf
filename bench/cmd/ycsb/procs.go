package main

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one server process this harness started. Every proc is stopped
// by its PID at exit (stopAll), never by name.
type proc struct {
	name    string
	bin     string
	args    []string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

var (
	procMu  sync.Mutex
	running = map[*proc]bool{}
)

func (p *proc) start() error {
	lf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	// Its own process group, so that a Ctrl-C on the terminal reaches this
	// harness only, which then stops its processes in order.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	procMu.Lock()
	if err := p.cmd.Start(); err != nil {
		procMu.Unlock()
		lf.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	running[p] = true
	procMu.Unlock()
	p.exited = make(chan struct{})
	go func() {
		p.cmd.Wait()
		lf.Close()
		close(p.exited)
	}()
	log.Printf("started %s (PID %d): %s %s", p.name, p.cmd.Process.Pid, filepath.Base(p.bin), strings.Join(p.args, " "))
	return nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill9 ends the process with SIGKILL and waits for it.
func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	procMu.Lock()
	delete(running, p)
	procMu.Unlock()
}

// stop ends the process with SIGTERM, SIGKILL after 20 s.
func (p *proc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		log.Printf("%s (PID %d) did not stop within 20 s of SIGTERM: SIGKILL", p.name, p.pid())
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
	procMu.Lock()
	delete(running, p)
	procMu.Unlock()
}

// stopAll stops every process still running, each by its PID.
func stopAll() {
	procMu.Lock()
	ps := make([]*proc, 0, len(running))
	for p := range running {
		ps = append(ps, p)
	}
	procMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

// tail returns the last lines of a log file, for error messages.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

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

// procsTicks sums cpuTicks over ps; -1 if one is unreadable.
func procsTicks(ps []*proc) int64 {
	var sum int64
	for _, p := range ps {
		t := cpuTicks(strconv.Itoa(p.pid()))
		if t < 0 {
			return -1
		}
		sum += t
	}
	return sum
}

// Ports are picked below the kernel's ephemeral range, so that no client
// connection can be holding them, and checked free for TCP and UDP on
// 127.0.0.1 (ringkv's gossip uses UDP on its peer port + 1). A picked port
// is never handed out twice in one run.
var (
	portMu    sync.Mutex
	usedPorts = map[int]bool{}
)

// freePorts returns a port p such that p+off is free for every off in
// offsets.
func freePorts(offsets ...int) int {
	lo, hi := 10000, 32767
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 12000 {
				hi = v - 1
			}
		}
	}
	maxOff := 0
	for _, o := range offsets {
		maxOff = max(maxOff, o)
	}
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		p := lo + int(time.Now().UnixNano()%int64(hi-lo-maxOff))
		ok := true
		for _, o := range offsets {
			if usedPorts[p+o] || !portFree(p+o) {
				ok = false
				break
			}
		}
		if ok {
			for _, o := range offsets {
				usedPorts[p+o] = true
			}
			return p
		}
	}
	die("no free port on 127.0.0.1")
	return 0
}

func portFree(p int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(p)
	tl, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	tl.Close()
	ul, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	ul.Close()
	return true
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// ensure makes sure the programs exist, installing pkgs with apt-get
// (as root) when one is missing. It returns an error naming what is
// missing when they cannot be had.
func ensure(pkgs []string, progs ...string) error {
	missing := func() []string {
		var m []string
		for _, p := range progs {
			if _, err := exec.LookPath(p); err != nil {
				m = append(m, p)
			}
		}
		return m
	}
	if len(missing()) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s not installed and not root: install with apt-get install %s", strings.Join(missing(), ", "), strings.Join(pkgs, " "))
	}
	log.Printf("%s missing: apt-get install %s", strings.Join(missing(), ", "), strings.Join(pkgs, " "))
	upd := exec.Command("apt-get", "update", "-qq")
	upd.Stdout, upd.Stderr = os.Stderr, os.Stderr
	upd.Run()
	inst := exec.Command("apt-get", append([]string{"install", "-y", "-qq"}, pkgs...)...)
	inst.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	inst.Stdout, inst.Stderr = os.Stderr, os.Stderr
	if err := inst.Run(); err != nil {
		return fmt.Errorf("apt-get install %s failed: %v", strings.Join(pkgs, " "), err)
	}
	if m := missing(); len(m) > 0 {
		return fmt.Errorf("%s still missing after apt-get install %s", strings.Join(m, ", "), strings.Join(pkgs, " "))
	}
	return nil
}
