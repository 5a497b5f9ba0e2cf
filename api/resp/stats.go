package resp

import (
	"os"
	"runtime"
	"strconv"
	"time"
)

// Stats are the server's counters.
type Stats struct {
	ConnectedClients int    // connections open now
	TotalConnections uint64 // connections accepted since start
	TotalCommands    uint64 // commands executed (including failed and unknown ones)
	ProtocolErrors   uint64 // connections closed for a malformed request
	// RejectedConnections counts connections refused over MaxConnections
	// (Redis' rejected_connections).
	RejectedConnections uint64
	// TimedOut counts connections closed by a deadline: IdleTimeout,
	// ReadTimeout (a command that did not arrive in time) or WriteTimeout
	// (a client that did not read its replies).
	TimedOut uint64
	// Commands holds per-command counters by lower-case command name;
	// unknown commands are counted under "unknown". Commands never called
	// are left out.
	Commands map[string]CommandStats
}

// CommandStats are the counters of one command.
type CommandStats struct {
	Calls  uint64 // times executed
	Errors uint64 // times it answered an error (backend, syntax, arity, auth ...)
	Usec   uint64 // total microseconds spent executing it
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	st := Stats{
		ConnectedClients:    n,
		TotalConnections:    s.totalConns.Load(),
		TotalCommands:       s.totalCommands.Load(),
		ProtocolErrors:      s.protoErrors.Load(),
		RejectedConnections: s.rejectedConns.Load(),
		TimedOut:            s.timeouts.Load(),
		Commands:            make(map[string]CommandStats),
	}
	add := func(name string, c *cmdStats) {
		if calls := c.calls.Load(); calls > 0 {
			st.Commands[name] = CommandStats{Calls: calls, Errors: c.errors.Load(), Usec: c.usec.Load()}
		}
	}
	for name, c := range s.cmds {
		add(name, &c.stats)
	}
	add("unknown", &s.unknown)
	return st
}

// ResetStats zeroes the command counters (CONFIG RESETSTAT).
func (s *Server) ResetStats() {
	reset := func(c *cmdStats) {
		c.calls.Store(0)
		c.errors.Store(0)
		c.usec.Store(0)
	}
	for _, c := range s.cmds {
		reset(&c.stats)
	}
	reset(&s.unknown)
	s.totalCommands.Store(0)
	s.protoErrors.Store(0)
}

// infoSections are the sections of INFO: the server's own, then the Backend's.
func (s *Server) infoSections() []InfoSection {
	st := s.Stats()
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	port := ""
	if addrs := s.Addrs(); len(addrs) > 0 {
		port = addrs[0].String()
	}
	secs := []InfoSection{
		{Name: "Server", Fields: [][2]string{
			{"redis_version", compatVersion},
			{"server_name", "ringkv"},
			{"redis_mode", "standalone"},
			{"os", runtime.GOOS + " " + runtime.GOARCH},
			{"go_version", runtime.Version()},
			{"process_id", strconv.Itoa(os.Getpid())},
			{"listen_addr", port},
			{"uptime_in_seconds", strconv.FormatInt(int64(time.Since(s.start)/time.Second), 10)},
		}},
		{Name: "Clients", Fields: [][2]string{
			{"connected_clients", strconv.Itoa(st.ConnectedClients)},
		}},
		{Name: "Stats", Fields: [][2]string{
			{"total_connections_received", u(st.TotalConnections)},
			{"total_commands_processed", u(st.TotalCommands)},
			{"total_protocol_errors", u(st.ProtocolErrors)},
			{"rejected_connections", u(st.RejectedConnections)},
			{"timed_out_connections", u(st.TimedOut)},
		}},
	}
	var cs InfoSection
	cs.Name = "Commandstats"
	for _, cmd := range s.sortedCommands() {
		if v, ok := st.Commands[cmd.name]; ok {
			cs.Fields = append(cs.Fields, [2]string{"cmdstat_" + cmd.name, cmdStatLine(v)})
		}
	}
	if v, ok := st.Commands["unknown"]; ok {
		cs.Fields = append(cs.Fields, [2]string{"cmdstat_unknown", cmdStatLine(v)})
	}
	secs = append(secs, cs)
	return append(secs, s.b.Info()...)
}

func cmdStatLine(v CommandStats) string {
	per := 0.0
	if v.Calls > 0 {
		per = float64(v.Usec) / float64(v.Calls)
	}
	return "calls=" + strconv.FormatUint(v.Calls, 10) +
		",usec=" + strconv.FormatUint(v.Usec, 10) +
		",usec_per_call=" + strconv.FormatFloat(per, 'f', 2, 64) +
		",failed_calls=" + strconv.FormatUint(v.Errors, 10)
}
