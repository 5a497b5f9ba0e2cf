package main

import (
	"log"
	"time"
)

// timeline is the steady load through a node kill and restart.
type timeline struct {
	node, size        int
	clients, seconds  int
	killAt, restartAt time.Duration // since the load began
	healthyAt         time.Duration // the restarted node answered /healthz (0: not within the run)
	restartErr        string
	total             *phase
}

// killTimeline runs workload A (uniform) on the three-node cluster with
// -kill-clients clients for -kill-seconds; at -kill-at it kills n3 with
// SIGKILL, -restart-after seconds later it starts n3 again on its data
// directory, with the same flags and ports.
func killTimeline(rt *live, size int) *timeline {
	n := rt.nodes[2]
	tl := &timeline{node: 3, size: size, clients: *flagKillConc, seconds: *flagKillLen}
	d, err := rt.newDriver(tl.clients)
	if err != nil {
		log.Printf("kill timeline: client: %v", err)
		return nil
	}
	defer d.Close()
	healthy := make(chan time.Duration, 1)
	log.Printf("kill timeline: %d clients, workload A, %d s; kill -9 %s at %d s, restart at %d s", tl.clients, tl.seconds, n.id, *flagKillAt, *flagKillAt+*flagRestart)
	start := time.Now()
	at := func(sec int) {
		switch sec {
		case *flagKillAt:
			log.Printf("kill timeline: kill -9 %s (PID %d)", n.id, n.p.pid())
			n.p.kill9()
			tl.killAt = time.Since(start)
		case *flagKillAt + *flagRestart:
			np := &proc{name: n.p.name, bin: n.p.bin, args: n.p.args, logPath: n.p.logPath}
			tl.restartAt = time.Since(start)
			if err := np.start(); err != nil {
				tl.restartErr = err.Error()
				return
			}
			n.p = np
			go func() {
				if waitHealthy(n) {
					healthy <- time.Since(start)
				}
			}()
		}
	}
	tl.total = runPhase(d, workloads["A"], uniform{*flagRecords}, size, tl.clients, time.Duration(tl.seconds)*time.Second, true, at)
	select {
	case h := <-healthy:
		tl.healthyAt = h
	case <-time.After(30 * time.Second):
		if tl.restartErr == "" && tl.restartAt > 0 {
			tl.restartErr = "n3 did not answer /healthz within 30 s of the end of the run: " + tail(n.p.logPath, 5)
		}
	}
	log.Printf("kill timeline: %d ops, %d failed", tl.total.ops, tl.total.errs)
	return tl
}
