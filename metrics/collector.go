package metrics

import (
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/storage"
)

// collector reads the components' figures at each scrape. It is an
// unchecked collector (Describe sends nothing): which series exist
// depends on the cluster (hint targets, peers, levels).
type collector struct {
	src Sources
}

func newCollector(src Sources) *collector { return &collector{src: src} }

// Describe implements prometheus.Collector (unchecked).
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The descriptions, by component.
var (
	nodeInfo = desc("ringkv_node_info", "This node: its ID, datacenter and rack (always 1).", "node_id", "dc", "rack")

	replicaWrites     = desc("ringkv_replica_writes_total", "Replication requests of writes this node coordinated, by outcome: ack, error (failed or refused in time) or timeout.", "outcome")
	forwardedWrites   = desc("ringkv_forwarded_writes_total", "Writes this node forwarded to a replica of their key (it is not one), failed forwards included.")
	forwardFailures   = desc("ringkv_forwarded_write_failures_total", "Writes this node forwarded whose forward failed (no replica reachable, or the outcome unknown).")
	readRepairs       = desc("ringkv_read_repairs_total", "Repair writes read repair sent to stale primaries.")
	retriesRecognized = desc("ringkv_retried_writes_recognized_total", "Writes this node's replica did not store again because it already held them under their write ID (X-Ringkv-Write-Id): attempts of writes a client retried after an unknown outcome (counted when stamped: a checked write given back and stamped again counts twice).")
	checkedWrites     = desc("ringkv_checked_writes_total", "Blind writes this node coordinated as checked writes, by outcome: stored (another replica confirmed the write superseded its state), read_first (every other replica held more: done again, reading first), unknown (no other replica answered; stored here, outcome unknown).", "outcome")
	readRepairFails   = desc("ringkv_read_repair_failures_total", "Repair writes read repair sent that failed.")
	readSiblings      = desc("ringkv_read_siblings", "Live siblings per read that merged replicas' answers (local-only reads at R=1 are not counted).")
	hintsPending      = desc("ringkv_hints_pending", "Hints this node keeps for a target (writes the target did not acknowledge).", "target")
	hintsPendingBytes = desc("ringkv_hints_pending_bytes", "Size of the hints this node keeps for a target.", "target")
	hintsDelivered    = desc("ringkv_hints_delivered_total", "Hints a target acknowledged since this node started.", "target")
	hintsRefused      = desc("ringkv_hints_refused_total", "Hints not kept for a target since this node started (past the byte bound or the hint window).", "target")
	hintsDiscarded    = desc("ringkv_hints_discarded_total", "Hints dropped unread for a target (they could not be decoded).", "target")

	aeRounds          = desc("ringkv_antientropy_rounds_total", "Anti-entropy rounds completed since this node started.")
	aeRunning         = desc("ringkv_antientropy_round_running", "1 while an anti-entropy round runs.")
	aePartitions      = desc("ringkv_antientropy_round_partitions", "The current (or last) round's (partition, peer) pairs: total and done.", "state")
	aeTrees           = desc("ringkv_antientropy_trees", "Merkle trees of the partitions this node replicates: total and trusted (built and current).", "state")
	aeKeys            = desc("ringkv_antientropy_keys_repaired_total", "Keys anti-entropy repaired: pulled (merged here from a peer) or pushed (sent to a peer).", "direction")
	aeBytes           = desc("ringkv_antientropy_bytes_total", "Bytes of anti-entropy exchanges, sent and received.", "direction")
	aePurged          = desc("ringkv_antientropy_tombstones_purged_total", "Tombstones removed once every replica held them.")
	aeLastRound       = desc("ringkv_antientropy_last_round_duration_seconds", "Duration of the last complete anti-entropy round.")
	aeUnverified      = desc("ringkv_antientropy_unverified_partitions", "Partitions this node shares with a peer that were never verified against it since this node started.", "peer")
	aeOldest          = desc("ringkv_antientropy_oldest_verification_age_seconds", "Age of the oldest last verification over the partitions this node shares with a peer (only when all were verified once).", "peer")
	aeShared          = desc("ringkv_antientropy_shared_partitions", "Partitions this node and a peer both replicate.", "peer")
	members           = desc("ringkv_members", "Ring members as this node sees them, by ring state and failure-detector liveness.", "state", "alive")
	transfersRunning  = desc("ringkv_transfers_running", "Partition moves this node runs that have not finished.")
	transferRemaining = desc("ringkv_transfer_partitions_remaining", "Partitions the unfinished moves still have to move.")
	transferBytes     = desc("ringkv_transfer_bytes", "Bytes moved by the moves this node knows of (finished ones included), by kind.", "kind")
	handingOver       = desc("ringkv_handing_over_partitions", "Partitions this node holds but neither replicates nor gains: it hands them to their owners.")

	respConnected   = desc("ringkv_resp_connections", "Redis-protocol connections open.")
	respConnections = desc("ringkv_resp_connections_total", "Redis-protocol connections accepted.")
	respCommands    = desc("ringkv_resp_commands_total", "Redis commands executed, by command.", "command")
	respErrors      = desc("ringkv_resp_command_errors_total", "Redis commands that answered an error, by command.", "command")
	respSeconds     = desc("ringkv_resp_command_duration_seconds_total", "Time spent executing Redis commands, by command.", "command")
	respProtocol    = desc("ringkv_resp_protocol_errors_total", "Redis-protocol connections closed for a malformed request.")

	engLevelTables   = desc("ringkv_engine_level_tables", "Tables in each level of the LSM tree.", "level")
	engLevelBytes    = desc("ringkv_engine_level_bytes", "Bytes of the tables in each level of the LSM tree.", "level")
	engMemtable      = desc("ringkv_engine_memtable_bytes", "Arena bytes of the active memtable.")
	engL0Depth       = desc("ringkv_engine_l0_depth", "The most L0 tables any one key lies in: what L0's compaction and stall triggers count.")
	engImmutable     = desc("ringkv_engine_immutable_memtables", "Full memtables waiting for their flush.")
	engWrites        = desc("ringkv_engine_writes_total", "Operations the engine committed.")
	engUserBytes     = desc("ringkv_engine_user_bytes_total", "Encoded bytes of the batches the engine committed.")
	engWALBytes      = desc("ringkv_engine_wal_bytes_total", "Bytes written to commit logs.")
	engWALSync       = desc("ringkv_engine_wal_sync_duration_seconds", "Commit-log fsyncs, by duration.")
	engFlushes       = desc("ringkv_engine_flushes_total", "Memtable flushes.")
	engMemReused     = desc("ringkv_engine_memtables_reused_total", "Memtables that reused a flushed memtable's memory instead of allocating their own.")
	engFlushBytes    = desc("ringkv_engine_flush_bytes_total", "Bytes of level-0 tables written by flushes.")
	engCompactions   = desc("ringkv_engine_compactions_total", "Compactions (trivial moves included).")
	engMoves         = desc("ringkv_engine_trivial_moves_total", "Tables moved down a level without rewriting.")
	engCompactBytes  = desc("ringkv_engine_compaction_bytes_total", "Bytes compactions read and wrote.", "direction")
	engStalls        = desc("ringkv_engine_write_stalls_total", "Writes delayed or stopped by the engine (flush or compaction behind).")
	engStallSeconds  = desc("ringkv_engine_write_stall_seconds_total", "Time writes spent stalled.")
	engQuarantined   = desc("ringkv_engine_tables_quarantined_total", "Tables taken out of service as damaged since the engine opened.")
	engCacheRequests = desc("ringkv_engine_block_cache_requests_total", "Block-cache lookups, by result: hit or miss.", "result")
	engCacheBytes    = desc("ringkv_engine_block_cache_bytes", "Bytes held by the block cache.")
	engCacheCapacity = desc("ringkv_engine_block_cache_capacity_bytes", "Capacity of the block cache.")
)

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, validLabels(labels)...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, validLabels(labels)...)
	}
	s := c.src
	gauge(nodeInfo, 1, s.NodeID, s.DC, s.Rack)

	if s.Coordinator != nil {
		st := s.Coordinator()
		counter(replicaWrites, float64(st.ReplicaAcks), "ack")
		counter(replicaWrites, float64(st.ReplicaErrors), "error")
		counter(replicaWrites, float64(st.ReplicaTimeouts), "timeout")
		counter(forwardedWrites, float64(st.Forwarded))
		counter(forwardFailures, float64(st.ForwardFailures))
		counter(readRepairs, float64(st.ReadRepairs))
		counter(readRepairFails, float64(st.ReadRepairFailures))
		counter(checkedWrites, float64(st.CheckedStored), "stored")
		counter(checkedWrites, float64(st.CheckedReadFirst), "read_first")
		counter(checkedWrites, float64(st.CheckedUnknown), "unknown")
		counter(retriesRecognized, float64(st.RetriesRecognized))
		bounds := coordinator.SiblingBuckets()
		buckets := make(map[float64]uint64, len(bounds))
		var cum uint64
		for i, b := range bounds {
			cum += st.ReadSiblings[i]
			buckets[float64(b)] = cum
		}
		cum += st.ReadSiblings[len(bounds)]
		ch <- prometheus.MustNewConstHistogram(readSiblings, cum, float64(st.ReadSiblingsSum), buckets)
	}

	if s.Hints != nil {
		hints := s.Hints()
		for _, t := range sortedKeys(hints) {
			h := hints[t]
			gauge(hintsPending, float64(h.Pending), t)
			gauge(hintsPendingBytes, float64(h.Bytes), t)
			counter(hintsDelivered, float64(h.Delivered), t)
			counter(hintsRefused, float64(h.Refused), t)
			counter(hintsDiscarded, float64(h.Discarded), t)
		}
	}

	if s.AntiEntropy != nil {
		st, peers := s.AntiEntropy()
		counter(aeRounds, float64(st.RoundsDone))
		gauge(aeRunning, boolFloat(st.Running))
		gauge(aePartitions, float64(st.PartitionsTotal), "total")
		gauge(aePartitions, float64(st.PartitionsDone), "done")
		gauge(aeTrees, float64(st.TreesTotal), "total")
		gauge(aeTrees, float64(st.TreesTrusted), "trusted")
		counter(aeKeys, float64(st.KeysPulled), "pulled")
		counter(aeKeys, float64(st.KeysPushed), "pushed")
		counter(aeBytes, float64(st.BytesSent), "sent")
		counter(aeBytes, float64(st.BytesReceived), "received")
		counter(aePurged, float64(st.TombstonesPurged))
		if !st.LastRoundEnd.IsZero() && !st.LastRoundEnd.Before(st.LastRoundStart) {
			gauge(aeLastRound, st.LastRoundEnd.Sub(st.LastRoundStart).Seconds())
		}
		now := time.Now()
		for _, p := range sortedKeys(peers) {
			ps := peers[p]
			gauge(aeShared, float64(ps.Shared), p)
			gauge(aeUnverified, float64(ps.Unverified), p)
			if ps.Unverified == 0 && !ps.OldestVerified.IsZero() {
				gauge(aeOldest, now.Sub(ps.OldestVerified).Seconds(), p)
			}
		}
	}

	if s.Members != nil {
		type key struct {
			state string
			alive bool
		}
		count := make(map[key]int)
		for _, m := range s.Members() {
			count[key{m.State, m.Alive}]++
		}
		states := append([]string(nil), MemberStates...)
		for k := range count {
			if !contains(states, k.state) {
				states = append(states, k.state)
			}
		}
		for _, st := range states {
			for _, alive := range []bool{true, false} {
				gauge(members, float64(count[key{st, alive}]), st, strconv.FormatBool(alive))
			}
		}
	}

	if s.Transfers != nil {
		running, remaining := 0, 0
		bytes := make(map[string]uint64)
		for _, t := range s.Transfers() {
			bytes[t.Kind] += t.Bytes
			if t.State != "done" && t.State != "stopped" {
				running++
				remaining += max(t.PartitionsTotal-t.PartitionsDone, 0)
			}
		}
		gauge(transfersRunning, float64(running))
		gauge(transferRemaining, float64(remaining))
		for _, k := range sortedKeys(bytes) {
			gauge(transferBytes, float64(bytes[k]), k)
		}
	}
	if s.HandingOver != nil {
		gauge(handingOver, float64(s.HandingOver()))
	}

	if s.RESP != nil {
		st := s.RESP()
		gauge(respConnected, float64(st.ConnectedClients))
		counter(respConnections, float64(st.TotalConnections))
		counter(respProtocol, float64(st.ProtocolErrors))
		for _, name := range sortedKeys(st.Commands) {
			cs := st.Commands[name]
			counter(respCommands, float64(cs.Calls), name)
			counter(respErrors, float64(cs.Errors), name)
			counter(respSeconds, float64(cs.Usec)/1e6, name)
		}
	}

	if s.Engine != nil {
		c.collectEngine(s.Engine(), gauge, counter, ch)
	}
}

func (c *collector) collectEngine(m storage.Metrics, gauge, counter func(*prometheus.Desc, float64, ...string), ch chan<- prometheus.Metric) {
	for level, lm := range m.Levels {
		l := strconv.Itoa(level)
		gauge(engLevelTables, float64(lm.Tables), l)
		gauge(engLevelBytes, float64(lm.Bytes), l)
	}
	gauge(engMemtable, float64(m.MemTableBytes))
	gauge(engL0Depth, float64(m.L0Depth))
	gauge(engImmutable, float64(m.ImmutableMemTables))
	counter(engWrites, float64(m.Writes))
	counter(engUserBytes, float64(m.UserBytes))
	counter(engWALBytes, float64(m.WALBytes))
	buckets := make(map[float64]uint64, len(storage.SyncLatencyBounds))
	var cum uint64
	for i, b := range storage.SyncLatencyBounds {
		cum += m.WALSyncLatency[i]
		buckets[b.Seconds()] = cum
	}
	cum += m.WALSyncLatency[len(storage.SyncLatencyBounds)]
	ch <- prometheus.MustNewConstHistogram(engWALSync, cum, m.WALSyncTime.Seconds(), buckets)
	counter(engFlushes, float64(m.Flushes))
	counter(engMemReused, float64(m.MemTablesReused))
	counter(engFlushBytes, float64(m.FlushBytes))
	counter(engCompactions, float64(m.Compactions))
	counter(engMoves, float64(m.TrivialMoves))
	counter(engCompactBytes, float64(m.CompactionReadBytes), "read")
	counter(engCompactBytes, float64(m.CompactionWriteBytes), "written")
	counter(engStalls, float64(m.WriteStalls))
	counter(engStallSeconds, m.WriteStallDuration.Seconds())
	counter(engQuarantined, float64(m.TablesQuarantined))
	counter(engCacheRequests, float64(m.BlockCache.Hits), "hit")
	counter(engCacheRequests, float64(m.BlockCache.Misses), "miss")
	gauge(engCacheBytes, float64(m.BlockCache.Size))
	gauge(engCacheCapacity, float64(m.BlockCache.Capacity))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validLabels makes label values valid UTF-8 (node IDs come from gossip:
// one that is not would make the scrape panic).
func validLabels(labels []string) []string {
	for i, l := range labels {
		if !utf8.ValidString(l) {
			labels[i] = strings.ToValidUTF8(l, "\uFFFD")
		}
	}
	return labels
}
