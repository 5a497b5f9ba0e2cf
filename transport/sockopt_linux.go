package transport

import (
	"syscall"
	"time"
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option (not in package
// syscall): how long transmitted data may stay unacknowledged before the
// kernel aborts the connection.
const tcpUserTimeout = 0x12

// setUnackedTimeout makes the kernel abort a connection whose sent bytes
// stay unacknowledged for d (d <= 0: the system default, which is many
// minutes). A peer cut off silently (its packets dropped, no reset) then
// breaks the connection within d instead of leaving calls to time out one
// after another on it until TCP gives up.
func setUnackedTimeout(c syscall.RawConn, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d/time.Millisecond))
	}); err != nil {
		return err
	}
	return serr
}
