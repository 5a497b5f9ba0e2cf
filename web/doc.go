// Package web is the live dashboard every ringkv node serves at /ui: one
// HTML page, a stylesheet and a script, embedded in the binary with
// go:embed (nothing is fetched from elsewhere: no CDN, no fonts; the
// Content-Security-Policy says default-src 'self').
//
// The page polls, every two seconds, the answering node's GET /v1/cluster
// (members with DC, rack, state and liveness, the ring's ownership, the
// hints it keeps for each member and when anti-entropy last verified the
// partitions it shares with each) and GET /ui/api/nodes, which this
// package serves: the answering node asks every alive member, concurrently
// and with a short timeout, for its own /v1/cluster, /v1/repair and
// /v1/transfers and returns, per member, its load (requests per second and
// p99 over its last seconds), the hints it holds, its anti-entropy rounds
// and its partition moves, or the error of a member that did not answer.
// The browser keeps the last five minutes of load points for its charts;
// the server keeps no history.
//
// The ring is drawn as a hand-written SVG circle of Q arcs coloured by the
// partition's primary owner; a member the failure detector holds down is
// shown as such (its row has class "down", data-alive="false" and a "down"
// label; its arcs are dimmed).
package web
