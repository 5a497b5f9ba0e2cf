package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/internal/faults"
)

var (
	faultSeed     = flag.Int64("seed", 0, "seed of TestProcessFaults' schedule (0: random, printed)")
	faultDuration = flag.Duration("fault-duration", 0, "workload time of TestProcessFaults (default 12s, or $RINGKV_FAULT_DURATION)")
)

// TestProcessFaults is the real-process tier of the fault tests: three
// `ringkv server` processes on loopback, two set clients over HTTP (read
// with R=QUORUM, add an element, write back with the context at W=QUORUM:
// checker a) and two register clients (blind SET and DEL over Redis, reads
// of every sibling over HTTP at R=QUORUM: checker b), while a seeded
// nemesis kill -9s a node and restarts it, or SIGSTOPs one and SIGCONTs
// it, one node at a time. Then every node is brought back and every set is
// read at R=ALL. The schedule replays with -seed=N (the interleaving with
// the processes does not).
func TestProcessFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	seed := *faultSeed
	if seed == 0 {
		seed = rand.Int64N(1<<31) + 1
	}
	dur := 12 * time.Second
	if d, err := time.ParseDuration(os.Getenv("RINGKV_FAULT_DURATION")); err == nil && d > 0 {
		dur = d
	}
	if *faultDuration > 0 {
		dur = *faultDuration
	}
	t.Logf("seed %d, workload %v (replay: go test ./internal/e2e -run '^TestProcessFaults$' -seed=%d)", seed, dur, seed)

	nodes := startCluster(t)
	bin := ringkvBinary(t)
	h := faults.NewHistory()
	h.Event("start: seed %d, 3 processes, N=3", seed)
	hc := &http.Client{Timeout: 4 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	setKeys := []string{"s0", "s1", "s2"}
	regKeys := []string{"r0", "r1", "r2"}
	// Each set starts as an empty set written at W=ALL, so that every
	// add has a context to write with (a blind write would replace
	// adds it never saw).
	for _, k := range setKeys {
		waitFor(t, 10*time.Second, "seed "+k, func() bool {
			return faults.HTTPPut(hc, nodes[0].http, k, nil, "", "ALL") == nil
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(2)
		go func(id int) {
			defer wg.Done()
			c := &procClient{id: id, nodes: nodes, h: h, hc: hc, rng: rand.New(rand.NewPCG(uint64(seed), uint64(id)+1))}
			for ctx.Err() == nil {
				c.add(setKeys[c.rng.IntN(len(setKeys))])
			}
		}(i)
		go func(id int) {
			defer wg.Done()
			c := &procClient{id: id, nodes: nodes, h: h, hc: hc, rng: rand.New(rand.NewPCG(uint64(seed), uint64(id)+1))}
			rcs := make([]*redis.Client, len(nodes))
			for j, n := range nodes {
				rcs[j] = redis.NewClient(&redis.Options{Addr: n.resp, MaxRetries: -1, DialTimeout: time.Second,
					ReadTimeout: 4 * time.Second, WriteTimeout: 4 * time.Second, PoolSize: 2})
				defer rcs[j].Close()
			}
			for ctx.Err() == nil {
				c.register(rcs, regKeys[c.rng.IntN(len(regKeys))])
			}
		}(10 + i)
	}

	// The nemesis runs here, in the test goroutine (restarts may fail the
	// test): one fault at a time, then a pause.
	rng := rand.New(rand.NewPCG(uint64(seed), 0xfa17))
	for ctx.Err() == nil {
		sleepCtx(ctx, time.Duration(500+rng.IntN(1000))*time.Millisecond)
		if ctx.Err() != nil {
			break
		}
		i := rng.IntN(len(nodes))
		n := nodes[i]
		hold := time.Duration(800+rng.IntN(1700)) * time.Millisecond
		if rng.IntN(2) == 0 {
			h.Event("kill -9 %s", n.id)
			n.kill()
			sleepCtx(ctx, hold)
			n.join = nodes[(i+1)%len(nodes)].peer
			n.start(t, bin)
			h.Event("restarted %s", n.id)
		} else {
			h.Event("SIGSTOP %s", n.id)
			n.cmd.Process.Signal(syscall.SIGSTOP)
			sleepCtx(ctx, hold)
			n.cmd.Process.Signal(syscall.SIGCONT)
			h.Event("SIGCONT %s", n.id)
		}
	}
	wg.Wait()
	h.Event("workload over")
	waitFor(t, 30*time.Second, "every node sees 3 alive members after the faults", func() bool {
		for _, n := range nodes {
			if alive(t, n) != 3 {
				return false
			}
		}
		return true
	})
	h.Event("healed")

	final := map[string]faults.ReadResult{}
	for _, k := range setKeys {
		for attempt := 0; attempt < 10; attempt++ {
			n := nodes[attempt%len(nodes)]
			op := h.Invoke(faults.Op{Client: -1, Node: n.id, Kind: faults.Read, Key: k, Level: "ALL", Quorum: 3})
			rr, _, err := faults.HTTPGet(hc, n.http, k, "ALL")
			if err != nil {
				h.Complete(op, faults.Info, err)
				time.Sleep(200 * time.Millisecond)
				continue
			}
			op.Read = rr
			h.Complete(op, faults.OK, nil)
			final[k] = rr
			break
		}
	}
	ops := h.Ops()
	vs := faults.CheckSetAdds(faults.OnKeys(ops, setKeys...), final)
	vs = append(vs, faults.CheckRegisterReads(faults.OnKeys(ops, regKeys...), 3)...)
	t.Logf("%s", h.Summary())
	if len(vs) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "%d violations with seed %d (replay: go test ./internal/e2e -run '^TestProcessFaults$' -seed=%d)\n", len(vs), seed, seed)
		keys := map[string]bool{}
		for i, v := range vs {
			if i < 10 {
				fmt.Fprintf(&b, "  %s\n", v)
			}
			keys[v.Key] = true
		}
		for k := range keys {
			fmt.Fprintf(&b, "history of %s:\n%s", k, h.Format(k))
			break
		}
		t.Error(b.String())
	}
	// Some ops must have succeeded, or the test proved nothing.
	acked := 0
	for _, o := range ops {
		if o.Acked() && o.Kind != faults.Read {
			acked++
		}
	}
	if acked < 20 {
		t.Errorf("only %d writes acknowledged: the workload did not run", acked)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

type procClient struct {
	id    int
	nodes []*node
	h     *faults.History
	hc    *http.Client
	rng   *rand.Rand
	seq   int
}

func (c *procClient) value(key string) string {
	c.seq++
	return fmt.Sprintf("%s.c%d.%d", key, c.id, c.seq)
}

// add reads a set at R=QUORUM and writes it back with one more element and
// the read's context at W=QUORUM.
func (c *procClient) add(key string) {
	n := c.nodes[c.rng.IntN(len(c.nodes))]
	elem := c.value(key)
	op := c.h.Invoke(faults.Op{Client: c.id, Node: n.id, Kind: faults.Add, Key: key, Value: elem, Level: "QUORUM", Quorum: 2, Context: true})
	rr, tok, err := faults.HTTPGet(c.hc, n.http, key, "QUORUM")
	if err != nil || tok == "" {
		if err == nil {
			err = errors.New("read returned no context")
		}
		c.h.Complete(op, faults.Fail, fmt.Errorf("read before the add: %w", err))
		return
	}
	set := faults.DecodeSets(rr.Values)
	set[elem] = true
	op.Saw = rr.Values
	err = faults.HTTPPut(c.hc, n.http, key, []byte(faults.EncodeSet(set)), tok, "QUORUM")
	c.h.Complete(op, faults.NetOutcome(err), err)
}

// register does a blind SET or a DEL over Redis, or reads every sibling
// over HTTP at R=QUORUM.
func (c *procClient) register(rcs []*redis.Client, key string) {
	i := c.rng.IntN(len(c.nodes))
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	switch p := c.rng.Float64(); {
	case p < 0.45:
		op := c.h.Invoke(faults.Op{Client: c.id, Node: n.id, Kind: faults.Read, Key: key, Level: "QUORUM", Quorum: 2})
		rr, _, err := faults.HTTPGet(c.hc, n.http, key, "QUORUM")
		if err != nil {
			c.h.Complete(op, faults.Info, err)
			return
		}
		op.Read = rr
		c.h.Complete(op, faults.OK, nil)
	case p < 0.55:
		op := c.h.Invoke(faults.Op{Client: c.id, Node: n.id, Kind: faults.Delete, Key: key, Level: "QUORUM", Quorum: 2})
		// DEL reads the key (R=QUORUM) and writes a tombstone with that
		// read's context only if it found a live value: answering 0, it
		// wrote nothing.
		n, err := rcs[i].Del(ctx, key).Result()
		if err == nil && n == 0 {
			c.h.Complete(op, faults.Fail, errors.New("DEL answered 0: nothing written"))
			return
		}
		c.h.Complete(op, faults.NetOutcome(err), err)
	default:
		v := c.value(key)
		op := c.h.Invoke(faults.Op{Client: c.id, Node: n.id, Kind: faults.Put, Key: key, Value: v, Level: "QUORUM", Quorum: 2})
		err := rcs[i].Set(ctx, key, v, 0).Err()
		c.h.Complete(op, faults.NetOutcome(err), err)
	}
}
