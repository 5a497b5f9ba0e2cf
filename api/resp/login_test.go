package resp

import (
	"testing"
	"time"
)

// With authentication required, a connection that does not log in within
// LoginTimeout is closed; one that logged in stays.
func TestConnectionsThatNeverLogInAreClosed(t *testing.T) {
	_, addr := startServer(t, nil, Options{Password: "pw", LoginTimeout: 300 * time.Millisecond})
	silent := dialRaw(t, addr)
	good := dialRaw(t, addr)
	good.send(cmd("AUTH", "pw"))
	if got := good.reply(); got != "+OK\r\n" {
		t.Fatalf("AUTH: %q", got)
	}
	time.Sleep(600 * time.Millisecond)
	silent.expectClosed()
	good.send(cmd("PING"))
	if got := good.reply(); got != "+PONG\r\n" {
		t.Fatalf("PING after LoginTimeout on a logged-in connection: %q", got)
	}
	// Without authentication an idle connection is fine (no TLS here).
	_, open := startServer(t, nil, Options{LoginTimeout: 300 * time.Millisecond})
	idle := dialRaw(t, open)
	time.Sleep(600 * time.Millisecond)
	idle.send(cmd("PING"))
	if got := idle.reply(); got != "+PONG\r\n" {
		t.Fatalf("PING on an idle connection without authentication: %q", got)
	}
}
