#!/usr/bin/env bash
# Redis-protocol benchmark: redis-benchmark against ringkv (one node with
# --sync batch, one node with --sync periodic, a three-node cluster), against
# redis-server, and against respfloor (bench/cmd/respfloor: the cheapest Go
# RESP server, an in-memory map with no disk, which shows what serving RESP
# from a Go process costs by itself), in one run, with the same settings for
# every target.
#
#   bench/redis/run.sh [-n REQUESTS] [-t "TARGET..."] [-b RINGKV_BINARY]
#
# -n defaults to 300000; -t picks targets among ringkv-1-batch
# ringkv-1-periodic ringkv-3-batch redis redis-cluster floor (default:
# all, in that order); -b benchmarks a ringkv binary built elsewhere (an A/B of two
# commits: build each, run the script once per binary, interleaved)
# instead of building this checkout. RINGKV_FLAGS (environment) adds
# flags to every ringkv server, e.g. RINGKV_FLAGS="--repair-interval -1s"
# for an A/B of a server setting.
#
# Per target and pipeline depth (-P 1, -P 16) it runs, for TEST set and then get,
#   redis-benchmark -h 127.0.0.1 -p PORT -t TEST -d 100 -r 1000000 -c 50 -n N -P P --csv
# and prints a markdown report: ops/s, p50 and p99 per target and test, the
# ratios ringkv-1-node / redis, and the servers' CPU time per request of each
# test (from /proc/PID/stat, summed over a target's processes) with the
# ratios three nodes / one node and one node / redis.
#
# redis-cluster is Redis Cluster with 3 masters and 3 replicas (redis-cli
# --cluster create --cluster-replicas 1), each appendonly yes, appendfsync
# everysec, driven by redis-benchmark --cluster (each client's keys go to
# the master owning their slot): the issue's first goal is the three-node
# ringkv at 0.5x its ops/s or more. Its CPU is that of all six processes.
#
# Everything is on 127.0.0.1. The ringkv binary is built fresh from this
# checkout into a temporary directory; every process the script starts is
# stopped by PID on exit and the temporary directory removed.
set -euo pipefail

N=300000
TARGETS="ringkv-1-batch ringkv-1-periodic ringkv-3-batch redis redis-cluster floor"
RUN_TARGETS=$TARGETS
RINGKV_BIN=
while getopts "n:t:b:h" opt; do
	case $opt in
	n) N=$OPTARG ;;
	t) RUN_TARGETS=$OPTARG ;;
	b) RINGKV_BIN=$OPTARG ;;
	*) sed -n '2,15p' "$0"; exit 2 ;;
	esac
done
case $N in '' | *[!0-9]*) echo "run.sh: -n must be a positive integer" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENTS=50
DATASIZE=100
KEYSPACE=1000000
PIPELINES="1 16"

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

# ---------------------------------------------------------------- tools
command -v go >/dev/null || die "go not found in PATH"
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
	log "redis-server/redis-benchmark missing: apt-get install redis-server"
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >&2 ||
			die "apt-get install redis-server failed"
	else
		die "redis-server is not installed and this script is not root; run: sudo apt-get update && sudo apt-get install -y redis-server"
	fi
	command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null ||
		die "redis-server/redis-benchmark/redis-cli still not found after apt-get install"
fi
command -v curl >/dev/null || die "curl not found (needed to check the cluster's state)"

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-respbench.XXXXXX")
PIDS=()
stop_pid() { # stop_pid PID: SIGTERM, wait up to 15 s, then SIGKILL
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "PID $pid did not exit after SIGTERM, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
stop_all() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	PIDS=()
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "${BENCH_PID:-}" ] && stop_pid "$BENCH_PID"
	stop_all
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RESULTS="$TMP/results.tsv" # target \t P \t test \t rps \t p50 \t p99 \t wall
: >"$RESULTS"
LOADS="$TMP/loads.tsv" # target \t load before \t load after
: >"$LOADS"
DBSIZES="$TMP/dbsize.tsv" # target \t P \t DBSIZE after the run
CPUS="$TMP/cpu.tsv" # target \t P \t server CPU ticks used during the run
: >"$CPUS"
CLK_TCK=$(getconf CLK_TCK)
: >"$DBSIZES"
NOTES="$TMP/notes.txt"
: >"$NOTES"

# ---------------------------------------------------------------- ports
# Ports are picked below the kernel's ephemeral range, so that no client
# connection (redis-benchmark's, the nodes' own) can be holding them.
read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range
PORT_LO=10000
PORT_HI=$((EPH_LO > 12000 ? EPH_LO - 1 : 32767))
port_busy() { # port_busy PORT: any TCP or UDP socket bound to it?
	ss -Htan "sport = :$1" 2>/dev/null | grep -q . || ss -Huan "sport = :$1" 2>/dev/null | grep -q .
}
USED_PORTS=" "
free_port() { # free_port [SPAN]: sets FREE_PORT to a port p such that p..p+SPAN-1 are all free
	local span=${1:-1} p i ok tries
	for ((tries = 0; tries < 200; tries++)); do
		p=$((PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO - span)))
		ok=1
		for ((i = 0; i < span; i++)); do
			if [[ $USED_PORTS == *" $((p + i)) "* ]] || port_busy $((p + i)); then ok=0; break; fi
		done
		if [ $ok = 1 ]; then
			for ((i = 0; i < span; i++)); do USED_PORTS+="$((p + i)) "; done
			FREE_PORT=$p
			return 0
		fi
	done
	die "no free loopback port found"
}

# ---------------------------------------------------------------- servers
wait_ping() { # wait_ping PORT PID LOG: until PING answers PONG; 1 if the process exited, dies after 30 s
	local port=$1 pid=$2 logf=$3 i
	for ((i = 0; i < 300; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			log "server on port $port (PID $pid) exited before answering PING; its log:"
			head -30 "$logf" >&2
			return 1
		fi
		[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	tail -20 "$logf" >&2
	die "server on port $port did not answer PING within 30 s"
}

RESTARTS=0
start_ringkv() { # start_ringkv NAME SYNC REPLICAS [JOIN]: sets RESP_PORT, HTTP_PORT, PEER_PORT
	local name=$1 sync=$2 replicas=$3 join=${4:-} attempt pid
	for attempt in 1 2 3; do
		free_port; RESP_PORT=$FREE_PORT
		free_port; HTTP_PORT=$FREE_PORT
		free_port 2; PEER_PORT=$FREE_PORT # gossip uses PEER_PORT+1
		local args=(server --node-id "$name" --data-dir "$TMP/data/$name" --resp-addr "127.0.0.1:$RESP_PORT"
			--http-addr "127.0.0.1:$HTTP_PORT" --peer-addr "127.0.0.1:$PEER_PORT" --replicas "$replicas" --sync "$sync")
		[ -n "$join" ] && args+=(--join "$join")
		# shellcheck disable=SC2206 # RINGKV_FLAGS is split on purpose
		[ -n "${RINGKV_FLAGS:-}" ] && args+=($RINGKV_FLAGS)
		"$TMP/ringkv" "${args[@]}" >"$TMP/$name.log" 2>&1 &
		pid=$!
		PIDS+=($pid)
		log "started ringkv $name (PID $pid): resp $RESP_PORT http $HTTP_PORT peer $PEER_PORT sync $sync replicas $replicas${join:+ join $join}"
		wait_ping "$RESP_PORT" $pid "$TMP/$name.log" && return 0
		echo "ringkv $name failed to start (attempt $attempt, ports resp $RESP_PORT http $HTTP_PORT peer $PEER_PORT): $(grep -m1 -iE 'panic|error' "$TMP/$name.log")" >>"$NOTES"
		RESTARTS=$((RESTARTS + 1))
		rm -rf "$TMP/data/$name"
	done
	die "ringkv $name failed to start 3 times"
}

start_floor() { # sets RESP_PORT
	local attempt pid
	for attempt in 1 2 3; do
		free_port; RESP_PORT=$FREE_PORT
		"$TMP/respfloor" -addr "127.0.0.1:$RESP_PORT" >"$TMP/respfloor.log" 2>&1 &
		pid=$!
		PIDS+=($pid)
		log "started respfloor (PID $pid): port $RESP_PORT"
		wait_ping "$RESP_PORT" $pid "$TMP/respfloor.log" && return 0
		echo "respfloor failed to start (attempt $attempt, port $RESP_PORT)" >>"$NOTES"
	done
	die "respfloor failed to start 3 times"
}

start_redis() { # sets RESP_PORT
	local attempt pid
	for attempt in 1 2 3; do
		free_port; RESP_PORT=$FREE_PORT
		rm -rf "$TMP/redis"; mkdir -p "$TMP/redis"
		redis-server --bind 127.0.0.1 --port "$RESP_PORT" --dir "$TMP/redis" --daemonize no \
			--appendonly yes --appendfsync everysec --save '' --logfile "$TMP/redis.log" >"$TMP/redis.out" 2>&1 &
		pid=$!
		PIDS+=($pid)
		log "started redis-server (PID $pid): port $RESP_PORT, appendonly yes, appendfsync everysec, save ''"
		wait_ping "$RESP_PORT" $pid "$TMP/redis.log" && return 0
		echo "redis-server failed to start (attempt $attempt, port $RESP_PORT)" >>"$NOTES"
	done
	die "redis-server failed to start 3 times"
}

start_redis_cluster() { # six redis-servers, 3 masters + 3 replicas; sets RESP_PORT (a master's)
	local i pid port ports=() addrs=() state
	rm -rf "$TMP/rc"
	for i in 1 2 3 4 5 6; do
		# A cluster node also listens on PORT+10000 (its bus): keep both free.
		local tries
		for ((tries = 0; tries < 50; tries++)); do
			free_port
			port=$FREE_PORT
			[ $((port + 10000)) -lt 65536 ] && ! port_busy $((port + 10000)) && break
		done
		mkdir -p "$TMP/rc/$i"
		redis-server --bind 127.0.0.1 --port "$port" --dir "$TMP/rc/$i" --daemonize no \
			--cluster-enabled yes --cluster-config-file "$TMP/rc/$i/nodes.conf" --cluster-node-timeout 5000 \
			--appendonly yes --appendfsync everysec --save '' --logfile "$TMP/rc/$i/redis.log" >"$TMP/rc/$i/out" 2>&1 &
		pid=$!
		PIDS+=($pid)
		wait_ping "$port" $pid "$TMP/rc/$i/redis.log" || die "redis-server $i of the cluster failed to start (port $port)"
		ports+=("$port")
		addrs+=("127.0.0.1:$port")
	done
	log "started Redis Cluster nodes on ports ${ports[*]}: appendonly yes, appendfsync everysec, save ''"
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$TMP/rc/create.log" 2>&1 ||
		{ cat "$TMP/rc/create.log" >&2; die "redis-cli --cluster create failed"; }
	for ((i = 0; i < 300; i++)); do
		state=ok
		for port in "${ports[@]}"; do
			redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || { state=; break; }
		done
		[ -n "$state" ] && [ "$(redis-cli -c -h 127.0.0.1 -p "${ports[0]}" set ringkv-bench-probe x 2>/dev/null)" = OK ] && break
		sleep 0.1
	done
	[ -n "$state" ] || die "Redis Cluster did not reach cluster_state:ok within 30 s (see $TMP/rc)"
	RESP_PORT=${ports[0]}
	CLUSTER_PORTS="${ports[*]}"
}

wait_cluster() { # wait_cluster HTTP_PORT...: every node sees 3 members normal and alive, and a SET succeeds
	local i port ok
	for ((i = 0; i < 600; i++)); do
		ok=1
		for port in "$@"; do
			local body
			body=$(curl -fsS "http://127.0.0.1:$port/v1/cluster" 2>/dev/null) || { ok=0; break; }
			[ "$(grep -o '"state":"normal"' <<<"$body" | wc -l)" = 3 ] || { ok=0; break; }
			[ "$(grep -o '"alive":true' <<<"$body" | wc -l)" = 3 ] || { ok=0; break; }
		done
		if [ $ok = 1 ] && [ "$(redis-cli -h 127.0.0.1 -p "$RESP_PORT" set ringkv-bench-probe x 2>/dev/null)" = OK ]; then
			return 0
		fi
		sleep 0.1
	done
	die "cluster did not converge within 60 s (see $TMP/n*.log)"
}

# ---------------------------------------------------------------- benchmark
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_ticks() { # user+system clock ticks used so far by every started process
	local pid sum=0 t
	for pid in "${PIDS[@]}"; do
		# Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
		t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
		sum=$((sum + ${t:-0}))
	done
	echo $sum
}

wait_idle() { # until the servers use < 2 clock ticks in 0.5 s, at most 15 s
	local i a b
	for ((i = 0; i < 30; i++)); do
		a=$(cpu_ticks)
		sleep 0.5
		b=$(cpu_ticks)
		[ $((b - a)) -lt 2 ] && return 0
	done
	echo "servers still busy 15 s after a run; its CPU includes those 15 s" >>"$NOTES"
}

bench_target() { # bench_target NAME PORT [REDIS-BENCHMARK FLAG...]
	local name=$1 port=$2 p test before after t0 t1 out err
	local extra=("${@:3}")
	before=$(loadavg)
	for p in $PIPELINES; do
		# SET and GET are separate redis-benchmark runs (SET first, so GET
		# reads the keys it wrote), so that each has its own server CPU.
		for test in set get; do
			out="$TMP/$name.P$p.$test.csv"
			err="$TMP/$name.P$p.$test.err"
			log "$name: redis-benchmark -t $test -P $p -n $N"
			c0=$(cpu_ticks)
			t0=$(date +%s.%N)
			# In the background, so that a signal to this script is handled at once
			# (cleanup stops BENCH_PID too).
			redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -d $DATASIZE -r $KEYSPACE -c $CLIENTS \
				-n "$N" -P "$p" "${extra[@]}" --csv >"$out" 2>"$err" &
			BENCH_PID=$!
			if ! wait $BENCH_PID; then
				echo "$name P$p $test: redis-benchmark exited with an error: $(head -c 300 "$err")" >>"$NOTES"
			fi
			t1=$(date +%s.%N)
			# Work the run left behind (memtable flushes and compactions of the
			# SETs) belongs to it, not to the next run: wait until the servers
			# are idle before reading their CPU.
			wait_idle
			printf '%s\t%s\t%s\t%s\n' "$name" "$p" "${test^^}" $(($(cpu_ticks) - c0)) >>"$CPUS"
			BENCH_PID=
			# stderr holds the progress lines (with --csv: none) and any errors.
			# redis-benchmark --cluster (7.0) warns once per replica that a
			# "master node has no slots": not an error.
			sed -i '/Master node .* has no slots, skipping/d' "$err"
			if grep -qvE '^\s*$' "$err"; then
				echo "$name P$p $test: redis-benchmark stderr: $(tr '\r' '\n' <"$err" | grep -vE '^\s*$' | sort | uniq -c | sort -rn | head -5 | tr '\n' ';')" >>"$NOTES"
			fi
			# CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
			local hdr
			hdr=$(grep -m1 '^"test"' "$out" || true)
			[ -n "$hdr" ] || { cat "$out" "$err" >&2; die "$name P$p $test: no CSV header in redis-benchmark output"; }
			awk -F, -v tgt="$name" -v P="$p" -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" '
				{ for (i = 1; i <= NF; i++) gsub(/"/, "", $i) }
				$1 == "test" { for (i = 1; i <= NF; i++) col[$i] = i; next }
				$1 == "SET" || $1 == "GET" {
					if (!("rps" in col) || !("p50_latency_ms" in col) || !("p99_latency_ms" in col)) { print "missing columns" > "/dev/stderr"; exit 1 }
					printf "%s\t%s\t%s\t%s\t%s\t%s\t%.1f\n", tgt, P, $1, $col["rps"], $col["p50_latency_ms"], $col["p99_latency_ms"], wall
				}' "$out" >>"$RESULTS" || die "$name P$p $test: could not parse $out"
		done
		[ "$(awk -F'\t' -v t="$name" -v p="$p" '$1 == t && $2 == p' "$RESULTS" | wc -l)" = 2 ] || { cat "$TMP/$name.P$p."*.csv >&2; die "$name P$p: expected a SET and a GET row"; }
		# Keys stored after this pipeline depth's runs (SET adds keys); "–" if the server does not answer DBSIZE with a number.
		if [ -n "${CLUSTER_PORTS:-}" ]; then
			# Redis Cluster: the masters' key counts (replicas hold copies).
			dbs=0
			for cp in $CLUSTER_PORTS; do
				redis-cli -h 127.0.0.1 -p "$cp" role 2>/dev/null | head -1 | grep -q master || continue
				dbs=$((dbs + $(redis-cli -h 127.0.0.1 -p "$cp" dbsize 2>/dev/null | head -1)))
			done
		else
			dbs=$(redis-cli -h 127.0.0.1 -p "$port" dbsize 2>&1 | head -1)
		fi
		case $dbs in '' | *[!0-9]*) dbs="–" ;; esac
		printf '%s\t%s\t%s\n' "$name" "$p" "$dbs" >>"$DBSIZES"
	done
	after=$(loadavg)
	printf '%s\t%s\t%s\n' "$name" "$before" "$after" >>"$LOADS"
}

check_alive() { # every started process still running?
	local pid
	for pid in "${PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || echo "PID $pid exited during the benchmark" >>"$NOTES"
	done
}

# ---------------------------------------------------------------- run
START_UPTIME=$(uptime)
log "building ringkv and respfloor from $ROOT"
if [ -n "$RINGKV_BIN" ]; then
	cp "$RINGKV_BIN" "$TMP/ringkv"
	BUILD_COMMIT="(a binary given with -b: $RINGKV_BIN)"
	BUILD_DIRTY=
else
	(cd "$ROOT" && go build -o "$TMP/ringkv" ./cmd/ringkv)
	# What was built: HEAD at build time, and tracked Go files (outside
	# bench/, which is a separate module) that differed from HEAD.
	BUILD_COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
	BUILD_DIRTY=$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null |
		awk '{ print $NF }' | grep -E '(\.go|go\.mod|go\.sum)$' | grep -v '^bench/' | tr '\n' ' ' || true)
fi
(cd "$ROOT/bench" && go build -o "$TMP/respfloor" ./cmd/respfloor)
wanted() { [[ " $RUN_TARGETS " == *" $1 "* ]]; }

# (a) one node, N=1, sync batch
if wanted ringkv-1-batch; then
start_ringkv n1 batch 1
bench_target ringkv-1-batch "$RESP_PORT"
check_alive; stop_all; rm -rf "$TMP/data"
fi

# (a') one node, N=1, sync periodic
if wanted ringkv-1-periodic; then
start_ringkv n1 periodic 1
bench_target ringkv-1-periodic "$RESP_PORT"
check_alive; stop_all; rm -rf "$TMP/data"
fi

# (b) three nodes, N=3, R=W=2 (QUORUM), sync batch; benchmark against n1
if wanted ringkv-3-batch; then
start_ringkv n1 batch 3
P1=$RESP_PORT H1=$HTTP_PORT SEED="127.0.0.1:$PEER_PORT"
start_ringkv n2 batch 3 "$SEED"
H2=$HTTP_PORT
start_ringkv n3 batch 3 "$SEED"
H3=$HTTP_PORT
RESP_PORT=$P1
wait_cluster "$H1" "$H2" "$H3"
bench_target ringkv-3-batch "$P1"
check_alive
for n in n1 n2 n3; do
	c=$(grep -ciE 'error|timeout|timed out|fail' "$TMP/$n.log" || true)
	[ "$c" = 0 ] || echo "ringkv-3-batch: $n log has $c lines matching error/timeout/fail, e.g.: $(grep -iE 'error|timeout|timed out|fail' "$TMP/$n.log" | head -2 | tr '\n' ' ')" >>"$NOTES"
done
stop_all; rm -rf "$TMP/data"
fi

# (c) redis-server, AOF everysec
if wanted redis; then
start_redis
bench_target redis "$RESP_PORT"
check_alive; stop_all
fi

# (c') Redis Cluster, 3 masters + 3 replicas, AOF everysec
if wanted redis-cluster; then
start_redis_cluster
bench_target redis-cluster "$RESP_PORT" --cluster
check_alive; stop_all; CLUSTER_PORTS=
fi

# (d) respfloor: Go's floor for serving RESP
if wanted floor; then
start_floor
bench_target floor "$RESP_PORT"
check_alive; stop_all
fi

END_UPTIME=$(uptime)

# ---------------------------------------------------------------- report
label() {
	case $1 in
	ringkv-1-batch) echo "ringkv, 1 node, --sync batch" ;;
	ringkv-1-periodic) echo "ringkv, 1 node, --sync periodic" ;;
	ringkv-3-batch) echo "ringkv, 3 nodes (N=3, R=W=2), --sync batch" ;;
	redis) echo "redis-server, appendfsync everysec" ;;
	redis-cluster) echo "Redis Cluster 3 masters + 3 replicas, appendfsync everysec" ;;
	floor) echo "respfloor (Go, in-memory map, no disk)" ;;
	esac
}
TARGETS=$RUN_TARGETS
val() { awk -F'\t' -v t="$1" -v p="$2" -v s="$3" -v c="$4" '$1 == t && $2 == p && $3 == s { print $c }' "$RESULTS"; }

echo "### redis-benchmark: ringkv vs redis-server"
echo
echo "- started: $START_UPTIME"
echo "- ended:   $END_UPTIME"
echo "- $(redis-server --version)"
echo "- $(redis-benchmark --version)"
echo "- $(go version)"
echo "- $(nproc) CPUs; ringkv built at the start from the working tree at commit $BUILD_COMMIT, $([ -n "$BUILD_DIRTY" ] && echo "with uncommitted changes to: ${BUILD_DIRTY% }" || echo "no uncommitted Go changes")"
echo "- per run: redis-benchmark -h 127.0.0.1 -p PORT -t {set,get} -d $DATASIZE -r $KEYSPACE -c $CLIENTS -n $N -P {1,16} --csv"
echo
echo "| target | test | ops/s | p50 ms | p99 ms |"
echo "|---|---|--:|--:|--:|"
for p in $PIPELINES; do
	for t in $TARGETS; do
		for s in SET GET; do
			echo "| $(label $t) | $s -P $p | $(val $t $p $s 4) | $(val $t $p $s 5) | $(val $t $p $s 6) |"
		done
	done
done
if wanted redis; then
echo
echo "Ratios to redis-server (ops/s: above 1 means faster than redis-server; p99: below 1 means better). The respfloor rows show how close a Go server that does no storage work at all gets:"
echo
echo "| target | test | ops/s ratio | p99 ratio |"
echo "|---|---|--:|--:|"
for t in ringkv-1-batch ringkv-1-periodic floor; do
	wanted $t || continue
	for p in $PIPELINES; do
		for s in SET GET; do
			r=$(awk -v a="$(val $t $p $s 4)" -v b="$(val redis $p $s 4)" 'BEGIN { printf "%.2f", a / b }')
			q=$(awk -v a="$(val $t $p $s 6)" -v b="$(val redis $p $s 6)" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }')
			echo "| $(label $t) | $s -P $p | $r | $q |"
		done
	done
done
fi
if wanted redis-cluster && wanted ringkv-3-batch; then
echo
echo "Three ringkv nodes (N=3, R=W=2, --sync batch, every request sent to one node) ÷ Redis Cluster 3 + 3 (everysec, redis-benchmark --cluster), the issue's first goal being 0.5 or more on ops/s (p99: below 1 means better):"
echo
echo "| test | ops/s ratio | p99 ratio |"
echo "|---|--:|--:|"
for p in $PIPELINES; do
	for s in SET GET; do
		r=$(awk -v a="$(val ringkv-3-batch $p $s 4)" -v b="$(val redis-cluster $p $s 4)" 'BEGIN { printf "%.2f", a / b }')
		q=$(awk -v a="$(val ringkv-3-batch $p $s 6)" -v b="$(val redis-cluster $p $s 6)" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }')
		echo "| $s -P $p | $r | $q |"
	done
done
fi
echo
echo "Server CPU time per request (user + system, all of a target's server processes, over each redis-benchmark run of $N requests and until the servers were idle again after it), wall time of each run, DBSIZE after each pipeline depth's SET and GET runs (– where the server does not count keys), and load average (1/5/15 min) before → after each target:"
echo
echo "| target | SET -P 1 CPU µs/req | GET -P 1 | SET -P 16 | GET -P 16 | wall s SET/GET -P 1 | -P 16 | DBSIZE after -P 1 | after -P 16 | load before | load after |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"
dbsize() { awk -F'\t' -v t="$1" -v p="$2" '$1 == t && $2 == p { print $3 }' "$DBSIZES"; }
cpureq() { awk -F'\t' -v t="$1" -v p="$2" -v s="$3" -v hz="$CLK_TCK" -v n="$N" '$1 == t && $2 == p && $3 == s { printf "%.1f", $4 / hz / n * 1e6 }' "$CPUS"; }
for t in $TARGETS; do
	echo "| $(label $t) | $(cpureq $t 1 SET) | $(cpureq $t 1 GET) | $(cpureq $t 16 SET) | $(cpureq $t 16 GET) | $(val $t 1 SET 7)/$(val $t 1 GET 7) | $(val $t 16 SET 7)/$(val $t 16 GET 7) | $(dbsize $t 1) | $(dbsize $t 16) | $(awk -F'\t' -v t=$t '$1 == t { print $2 }' "$LOADS") | $(awk -F'\t' -v t=$t '$1 == t { print $3 }' "$LOADS") |"
done
echo
cpuratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "–" }'; }
if wanted ringkv-3-batch && wanted ringkv-1-batch; then
	echo "Server CPU per request, three nodes ÷ one node (--sync batch both; the issue's goals: ≤ 3.5 for SET, ≤ 2.5 for GET): SET -P 1 $(cpuratio "$(cpureq ringkv-3-batch 1 SET)" "$(cpureq ringkv-1-batch 1 SET)"), GET -P 1 $(cpuratio "$(cpureq ringkv-3-batch 1 GET)" "$(cpureq ringkv-1-batch 1 GET)"), SET -P 16 $(cpuratio "$(cpureq ringkv-3-batch 16 SET)" "$(cpureq ringkv-1-batch 16 SET)"), GET -P 16 $(cpuratio "$(cpureq ringkv-3-batch 16 GET)" "$(cpureq ringkv-1-batch 16 GET)")."
	echo
fi
if wanted redis && wanted ringkv-1-batch; then
	echo "Server CPU per request, one node (--sync batch) ÷ redis-server (the issue's goals at -P 16: ≤ 2 for SET, ≤ 1.5 for GET): SET -P 1 $(cpuratio "$(cpureq ringkv-1-batch 1 SET)" "$(cpureq redis 1 SET)"), GET -P 1 $(cpuratio "$(cpureq ringkv-1-batch 1 GET)" "$(cpureq redis 1 GET)"), SET -P 16 $(cpuratio "$(cpureq ringkv-1-batch 16 SET)" "$(cpureq redis 16 SET)"), GET -P 16 $(cpuratio "$(cpureq ringkv-1-batch 16 GET)" "$(cpureq redis 16 GET)")."
	echo
fi
if [ -s "$NOTES" ]; then
	echo "Notes:"
	echo
	sed 's/^/- /' "$NOTES"
else
	echo "No errors: redis-benchmark wrote nothing to stderr, every server stayed up, the cluster logs have no error/timeout lines."
fi
