package hostile

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// floodConns is the size of each flood.
const floodConns = 5000

// Memory bounds of the flood, per connection open: what the node may hold
// for one idle Redis client (measured about 11 KiB: a goroutine, 4 KiB
// read and write buffers, the socket) and for one peer connection.
const (
	perRedisConn = 32 << 10
	perPeerConn  = 64 << 10
)

// floodPhase mirrors cmd/flood's Phase.
type floodPhase struct {
	Name                            string
	Conns                           int
	Before, During, After           Memory
	Served, Refused, Closed, Failed int
	FirstErrors                     []string
	Probe                           ProbeResult
	Seconds                         float64
}

// TestFlood builds cmd/flood without -race and runs it: 5,000 connections
// at once to a node's Redis port, to a Redis-protocol server limited to
// 1,000 clients, and to the node's peer port (limited to 1,024).
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("the flood takes about ten seconds and a build")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "flood")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ringkv/ringkv/internal/hostile/cmd/flood").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/flood: %v\n%s", err, out)
	}
	runCtx, cancelRun := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelRun()
	out, err := exec.CommandContext(runCtx, bin, "-conns", "5000").Output()
	if err != nil {
		t.Fatalf("flood: %v\n%s", err, out)
	}
	var rep struct {
		Skip, Error string
		NoFile      uint64
		Phases      []floodPhase
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("flood output %q: %v", out, err)
	}
	if rep.Skip != "" {
		t.Skip("flood: " + rep.Skip)
	}
	if rep.Error != "" {
		t.Fatal("flood: " + rep.Error)
	}
	phases := map[string]floodPhase{}
	for _, ph := range rep.Phases {
		phases[ph.Name] = ph
		t.Logf("%s: %d connections in %.1fs: served %d, refused with an error %d, closed %d, failed %d; before: %v; during: %v (live heap +%.1f MiB); after: %v; probe: %v",
			ph.Name, ph.Conns, ph.Seconds, ph.Served, ph.Refused, ph.Closed, ph.Failed, ph.Before, ph.During, mib(Growth(ph.Before, ph.During)), ph.After, ph.Probe)
		if !ph.Probe.OK() {
			t.Errorf("%s: the well-behaved client was not served: %v", ph.Name, ph.Probe)
		}
		if ph.Failed != 0 {
			t.Errorf("%s: %d connections failed: %q", ph.Name, ph.Failed, ph.FirstErrors)
		}
	}
	if len(phases) != 3 {
		t.Fatalf("phases: %v", rep.Phases)
	}
	if ph := phases["resp-node"]; ph.Served != floodConns {
		t.Errorf("node's Redis port served %d of %d connections", ph.Served, floodConns)
	} else if g, bound := Growth(ph.Before, ph.During), uint64(floodConns*perRedisConn); g > bound {
		t.Errorf("node's live heap grew %.1f MiB with %d Redis clients open, bound %.1f MiB", mib(g), floodConns, mib(bound))
	}
	// The probe holds one of the 1,000 places.
	if ph := phases["resp-maxclients"]; ph.Served != 999 || ph.Refused+ph.Closed != floodConns-999 || ph.Refused < (floodConns-999)/2 {
		t.Errorf("MaxConnections 1000: served %d (want 999), refused with the error %d, closed %d", ph.Served, ph.Refused, ph.Closed)
	}
	if ph := phases["peer-node"]; ph.Served > 1024 || ph.Closed < floodConns-1024 {
		t.Errorf("peer port (MaxConnections 1024): %d kept open, %d closed", ph.Served, ph.Closed)
	} else if g, bound := Growth(ph.Before, ph.During), uint64(1024*perPeerConn); g > bound {
		t.Errorf("node's live heap grew %.1f MiB with %d peer connections, bound %.1f MiB", mib(g), ph.Served, mib(bound))
	}
}
