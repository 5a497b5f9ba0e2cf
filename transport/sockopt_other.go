//go:build !linux

package transport

import (
	"syscall"
	"time"
)

// setUnackedTimeout is a no-op where TCP_USER_TIMEOUT does not exist; the
// write timeout and TCP keepalives are what detect a silent peer there.
func setUnackedTimeout(syscall.RawConn, time.Duration) error { return nil }
