// Package e2e runs real ringkv server processes on loopback and drives them
// the way users do, with go-redis over the Redis protocol and with HTTP.
package e2e
