package replica

import (
	"fmt"

	"github.com/ringkv/ringkv/storage"
)

// Reincarnate gives the data in db a new incarnation before any store
// opens it, for an engine restored from a snapshot: the snapshot's own
// incarnation may have stamped writes after the snapshot was taken (the
// node it came from kept running), so stamping again from the counters the
// snapshot holds would mint dots the cluster has already seen, and peers
// would drop the restored node's new writes as already known. A new
// random actor starts a counter sequence no peer has seen (see the package
// doc). Two nodes restored from one snapshot get different incarnations.
//
// The new incarnation is recorded as cleanly shut down, so the next Open
// keeps it (no dot was minted with it; Minted reports ""). It returns the
// incarnation the data had (0 if it had none or an unreadable record) and
// the new one. db must not be used by a Store.
func Reincarnate(db *storage.DB) (old, inc uint64, err error) {
	old, _, err = recoverIncarnation(db)
	if err != nil {
		return 0, 0, fmt.Errorf("replica: reincarnate: %w", err)
	}
	if inc, err = mintIncarnation(old); err != nil {
		return 0, 0, err
	}
	if err := writeIncarnation(db, inc, true); err != nil {
		return 0, 0, fmt.Errorf("replica: reincarnate: %w", err)
	}
	return old, inc, nil
}
