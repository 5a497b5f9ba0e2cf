package replica

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/version"
)

// The counter floor. A dot's counter is per key: a write takes the next
// counter after the key's context entry for this store's actor. When a key
// is removed physically (a purged tombstone, a fallback's copy), its
// context goes with it, and the next write of the key here would start
// again at 1, reusing dots that replicas which still hold the tombstone
// have seen: they would take the new write for an old, superseded one and
// drop it. So every removal raises a floor, the largest counter of this
// actor among the removed contexts, recorded durably in the same engine
// batch as the removal, and a write to a key this store holds nothing for
// starts above it. (A key it holds has its own context, which already
// covers every dot this actor minted for it.) The floor belongs to the
// actor: a new incarnation starts without one.
var metaCounterFloor = []byte{metaPrefix, 'f', 'l', 'o', 'o', 'r'}

const counterFloorFormat = 1

// loadCounterFloor reads the floor recorded for actor (0 if none, or if it
// was recorded for another incarnation).
func loadCounterFloor(db *storage.DB, actor string) (uint64, error) {
	rec, err := db.Get(metaCounterFloor)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("replica: read the counter floor: %w", err)
	}
	if len(rec) < 2 || rec[0] != counterFloorFormat {
		return 0, fmt.Errorf("replica: counter floor record of format %d (%d bytes) not understood", rec[0], len(rec))
	}
	n, w := binary.Uvarint(rec[1:])
	if w <= 0 || n > uint64(len(rec)-1-w) {
		return 0, fmt.Errorf("replica: malformed counter floor record")
	}
	who := string(rec[1+w : 1+w+int(n)])
	floor, w2 := binary.Uvarint(rec[1+w+int(n):])
	if w2 <= 0 || floor > version.MaxCounter {
		return 0, fmt.Errorf("replica: malformed counter floor record")
	}
	if who != actor {
		return 0, nil
	}
	return floor, nil
}

func counterFloorRecord(actor string, floor uint64) []byte {
	rec := []byte{counterFloorFormat}
	rec = binary.AppendUvarint(rec, uint64(len(actor)))
	rec = append(rec, actor...)
	return binary.AppendUvarint(rec, floor)
}

// CounterFloor returns the store's counter floor (see above).
func (s *Store) CounterFloor() uint64 { return s.floor.Load() }

// applyFloor makes a write to a key this store holds nothing for (obj
// empty) start above the counter floor.
func (s *Store) applyFloor(obj *version.Object) {
	f := s.floor.Load()
	if f == 0 || !obj.Empty() {
		return
	}
	obj.Context = version.Clock{s.actor: f}
}
