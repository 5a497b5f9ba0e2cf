// Command aebench measures what anti-entropy exchanges: two replicas of
// the same keys (real engines on disk, the in-memory transport between
// them), then 0, 100 and 10,000 keys made different on one of them, and
// one exchange round each time. It prints, per divergence, the bytes sent
// and received against the bytes of data the replicas hold, and the time
// of the round.
//
//	go run ./cmd/aebench [-keys 1000000] [-value 100] [-partitions 1024] [-diverge 0,100,10000]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

type peers struct{ r *ring.Ring }

func (p peers) Ring() *ring.Ring              { return p.r }
func (p peers) Addr(id string) (string, bool) { return id, true }
func (p peers) Alive(string) bool             { return true }

func main() {
	keys := flag.Int("keys", 1000000, "keys on both replicas")
	valueSize := flag.Int("value", 100, "value bytes")
	partitions := flag.Int("partitions", 1024, "ring partitions (Q)")
	diverge := flag.String("diverge", "0,100,10000", "divergent keys per round, comma-separated")
	flag.Parse()

	rg, err := ring.New(ring.Config{Partitions: *partitions, Replicas: 2},
		[]ring.Member{{ID: "a", State: ring.StateNormal}, {ID: "b", State: ring.StateNormal}})
	if err != nil {
		log.Fatal(err)
	}
	net := transport.NewNetwork()
	net.SetDefaultTimeout(time.Minute)
	var stores []*replica.Store
	var services []*antientropy.Service
	for i, id := range []string{"a", "b"} {
		dir, err := os.MkdirTemp("", "aebench")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		db, err := storage.Open(dir, &storage.Options{Sync: storage.SyncNone, MemTableSize: 64 << 20})
		if err != nil {
			log.Fatal(err)
		}
		defer db.Close()
		st := replica.New(db, version.Actor(id, uint64(i+1)))
		ae, err := antientropy.New(id, st, peers{rg}, net.Client(id), antientropy.Options{Interval: time.Hour, Rate: -1, TombstoneGrace: -1})
		if err != nil {
			log.Fatal(err)
		}
		stop, err := net.Listen(id, transportHandler(ae))
		if err != nil {
			log.Fatal(err)
		}
		defer stop.Close()
		stores, services = append(stores, st), append(services, ae)
	}

	// The same objects on both replicas, as replication leaves them.
	start := time.Now()
	value := bytes.Repeat([]byte{'v'}, *valueSize)
	var dataBytes int64
	const batch = 1000
	for lo := 0; lo < *keys; lo += batch {
		var ks [][]byte
		var objs []*version.Object
		for i := lo; i < min(lo+batch, *keys); i++ {
			k := []byte(fmt.Sprintf("key:%010d", i))
			o := &version.Object{}
			if _, err := o.Write(version.Actor("w", 1), nil, value, false, int64(i)); err != nil {
				log.Fatal(err)
			}
			ks, objs = append(ks, k), append(objs, o)
			dataBytes += int64(len(k) + o.EncodedSize())
		}
		for _, st := range stores {
			if err := st.ApplyBatch(ks, objs); err != nil {
				log.Fatal(err)
			}
		}
	}
	log.Printf("loaded %d keys (%d bytes of keys and objects per replica) in %v", *keys, dataBytes, time.Since(start).Round(time.Millisecond))
	for _, ae := range services {
		ae.Build()
	}
	services[0].Start() // its first round finds nothing to do; later ones run on Repair
	waitRound(services[0], 1)

	fmt.Printf("| keys | divergent keys | bytes exchanged | of the data | keys repaired | round |\n|--:|--:|--:|--:|--:|--:|\n")
	next := 0
	for _, f := range strings.Split(*diverge, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			log.Fatal(err)
		}
		for i := 0; i < n; i++ {
			k := []byte(fmt.Sprintf("key:%010d", (next*7919)%*keys))
			next++
			if _, err := stores[0].Coordinate(k, nil, []byte("changed"), false, time.Now().UnixNano()); err != nil {
				log.Fatal(err)
			}
		}
		before := services[0].Status()
		t0 := time.Now()
		waitRound(services[0], services[0].Repair())
		took := time.Since(t0)
		after := services[0].Status()
		exchanged := (after.BytesSent + after.BytesReceived) - (before.BytesSent + before.BytesReceived)
		repaired := after.KeysPushed - before.KeysPushed
		fmt.Printf("| %d | %d | %d | %.4f%% | %d | %v |\n", *keys, n, exchanged, 100*float64(exchanged)/float64(dataBytes), repaired, took.Round(time.Millisecond))
	}
	for _, ae := range services {
		ae.Close()
	}
}

func waitRound(s *antientropy.Service, n uint64) {
	for s.Status().RoundsDone < n {
		time.Sleep(2 * time.Millisecond)
	}
}

func transportHandler(ae *antientropy.Service) transport.Handler {
	return transport.HandlerFunc(ae.Handle)
}
