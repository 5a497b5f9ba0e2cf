package replica

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// keyLocks excludes writers of one key from each other, lets writers of
// other keys through while a key is held, and forgets a key once nobody
// holds or waits for it.
func TestKeyLocks(t *testing.T) {
	l := newKeyLocks()
	var wg sync.WaitGroup
	counters := make([]int, 4) // unsynchronised on purpose: the lock must protect them (-race checks)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := (g + i) % len(counters)
				key := []byte(fmt.Sprintf("key-%d", k))
				held := l.lockAll([][]byte{key})
				counters[k]++
				held.unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, c := range counters {
		total += c
	}
	if total != 8*500 {
		t.Fatalf("counted %d increments, want %d", total, 8*500)
	}

	heldA := l.lockAll([][]byte{[]byte("a")})
	done := make(chan struct{})
	go func() {
		l.lockAll([][]byte{[]byte("b")}).unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a lock on key b waited for the holder of key a")
	}
	blocked := make(chan struct{})
	go func() {
		l.lockAll([][]byte{[]byte("a")}).unlock()
		close(blocked)
	}()
	select {
	case <-blocked:
		t.Fatal("a second lock on key a did not wait for the holder")
	case <-time.After(50 * time.Millisecond):
	}
	heldA.unlock()
	<-blocked
	for i := range l.shards {
		if n := len(l.shards[i].m); n != 0 {
			t.Fatalf("shard %d still holds %d keys after every lock was released", i, n)
		}
	}
}
