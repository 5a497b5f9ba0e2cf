// Package metrics exposes a node's figures to Prometheus, in its text
// format on GET /metrics: client request latencies by interface,
// operation and consistency level (a coordinator.Observer fed on the
// request path), and, read from each component when scraped, the
// coordinator's replica acknowledgements, forwards, read repairs and
// siblings per read, the hints kept per target, anti-entropy rounds and
// verification ages, partition moves, gossip members by state, the Redis
// server's connections and commands, and the storage engine's figures.
//
// Names follow the Prometheus conventions: a ringkv_ prefix, base units
// (seconds, bytes), _total for counters. The package knows the components
// only through the functions of Sources, so a test can feed it anything.
package metrics
