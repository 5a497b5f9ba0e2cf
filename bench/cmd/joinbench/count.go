package main

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
)

type nodeCount struct {
	id   string
	keys int
	// bytes sums the key and the encoded object (value, versions) of
	// every key the node holds: what it stores, before the engine's
	// framing and compression.
	bytes               int64
	dirBefore, dirAfter int64
}

type replicaCounts struct {
	nodes []nodeCount
	// oneCopyBytes is the stored bytes of one replica of every key (the
	// largest of its copies).
	oneCopyBytes int64
	// ringPartitions counts the partitions whose preference list names
	// the joiner in the four-node ring.
	ringPartitions int
	// expected counts the keys of those partitions; missing, the ones the
	// joiner does not hold; extra, the keys it holds of other partitions.
	expected, missing, extra int
	// underReplicated counts keys held by fewer than N nodes.
	underReplicated int
}

// countReplicas opens every (stopped) node's engine and counts the keys it
// holds, checks the joiner against the four-node ring (every member normal,
// the servers' Q and N), and measures each data directory before and after
// compacting its engine.
func countReplicas(nodes []*node, keys int, joiner string) (replicaCounts, error) {
	var c replicaCounts
	var members []ring.Member
	for _, n := range nodes {
		members = append(members, ring.Member{ID: n.id, State: ring.StateNormal})
	}
	rg, err := ring.New(ring.Config{Partitions: partitions, Replicas: replicas}, members)
	if err != nil {
		return c, err
	}
	joinerParts := make([]bool, partitions)
	for p := range partitions {
		if slices.Contains(rg.Preference(p), joiner) {
			joinerParts[p] = true
			c.ringPartitions++
		}
	}
	held := make([]uint8, keys)
	sizes := make([]int32, keys)
	heldByJoiner := make([]bool, keys)
	for _, n := range nodes {
		nc := nodeCount{id: n.id}
		if nc.dirBefore, err = dirSize(n.dir); err != nil {
			return c, err
		}
		db, err := storage.Open(filepath.Join(n.dir, "engine"), &storage.Options{})
		if err != nil {
			return c, fmt.Errorf("%s: %w", n.id, err)
		}
		var buf []byte
		var bad error
		err = replica.New(db, "joinbench").Scan(0, ^uint64(0), func(e replica.Entry) bool {
			buf = e.Object.Encode(buf[:0])
			sz := len(e.Key) + len(buf)
			nc.keys++
			nc.bytes += int64(sz)
			idx, ok := keyIndex(e.Key, keys)
			if !ok {
				bad = fmt.Errorf("%s holds a key that was never written: %q", n.id, e.Key)
				return false
			}
			held[idx]++
			sizes[idx] = max(sizes[idx], int32(sz))
			if n.id == joiner {
				heldByJoiner[idx] = true
				if !joinerParts[rg.Partition(e.Token)] {
					c.extra++
				}
			}
			return true
		})
		if err == nil {
			err = bad
		}
		if err == nil {
			err = db.Compact()
		}
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return c, fmt.Errorf("%s: %w", n.id, err)
		}
		if nc.dirAfter, err = dirSize(n.dir); err != nil {
			return c, err
		}
		c.nodes = append(c.nodes, nc)
	}
	for i := range keys {
		c.oneCopyBytes += int64(sizes[i])
		if held[i] < replicas {
			c.underReplicated++
		}
		if joinerParts[rg.PartitionOfKey([]byte(key(i)))] {
			c.expected++
			if !heldByJoiner[i] {
				c.missing++
			}
		}
	}
	return c, nil
}

// keyIndex parses a key written by this command ("key:%010d").
func keyIndex(k []byte, keys int) (int, bool) {
	if len(k) != 14 || string(k[:4]) != "key:" {
		return 0, false
	}
	i, err := strconv.Atoi(string(k[4:]))
	return i, err == nil && i >= 0 && i < keys
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	return total, err
}
