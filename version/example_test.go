package version_test

import (
	"fmt"

	"github.com/ringkv/ringkv/version"
)

// Two clients write concurrently through different replicas; after the
// replicas exchange state both values are siblings. A client that read both
// and writes back with that read's context replaces exactly those two.
func Example() {
	var a, b version.Object
	a.Write("a", nil, []byte("v1"), false, 1)
	b.Write("b", nil, []byte("v2"), false, 2)

	m := version.Merge(&a, &b)
	fmt.Println("after merge:", m)

	token := version.ClockToString(m.Context) // sent to the client with the values
	ctx, _ := version.ParseClock(token)       // and sent back with its next write
	m.Write("a", ctx, []byte("v3"), false, 3)
	fmt.Println("after resolving write:", m)

	// Replaying b's old state (a late message) changes nothing.
	fmt.Println("replay is a no-op:", version.Merge(m, &b).Equal(m))
	// Output:
	// after merge: {a:1, b:1} [a:1="v1" b:1="v2"]
	// after resolving write: {a:2, b:1} [a:2="v3"]
	// replay is a no-op: true
}
