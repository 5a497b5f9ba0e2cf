#!/usr/bin/env bash
# Profile the replicated path: start three ringkv nodes (N=3, R=W=2,
# --sync batch) on 127.0.0.1, run one redis-benchmark test against the
# first, and take a CPU profile of every node while it runs.
#
#   bench/redis/profile.sh [-b RINGKV_BINARY] [-n REQUESTS] [-s PROFILE_SECONDS] [-o OUTDIR] [-c] [-w] [-S] TEST PIPELINE
#
# TEST is set or get (a get run first loads 100,000 keys), PIPELINE the
# redis-benchmark -P. It prints redis-benchmark's CSV line and the three
# servers' CPU time per request (user + system, from /proc; in all and per
# node), and writes
# OUTDIR/TEST-PPIPELINE-nI.pprof (read with: go tool pprof -top BINARY FILE).
# -s 0 takes no profile (for A/B runs of CPU per request). -c also counts
# the servers' system calls per request with perf stat (the tracepoints
# raw_syscalls:sys_enter and a few syscalls:sys_enter_*). RINGKV_FLAGS
# (environment) adds flags to every server. Ports 17001-17003 (RESP),
# 17101-17103 (HTTP) and 17201, 17211, 17221 (peer; gossip one above) must
# be free. Every process it starts is stopped by PID. -w first puts the
# cluster in the state run.sh measures in: SET -P 1, GET -P 1 and SET -P 16
# runs of 300,000 requests over 1,000,000 keys (data in tables, not only
# in the memtable), then waits until the servers are idle; TEST then runs
# over those 1,000,000 keys. -S spreads the load over the three nodes as a
# cluster-aware client does: one redis-benchmark per node, 17 clients each
# (51 in all) and a third of the requests each, so that every node
# coordinates a third of the requests (with N=3 on three nodes every node
# is a replica of every key: none forwards), as YCSB's ringkv-3-w2-resp
# target spreads them; it prints each redis-benchmark's CSV line.
set -euo pipefail

BIN= N=200000 SECS=10 OUT=. COUNT= WARM= SPREAD=
while getopts "b:n:s:o:cwSh" opt; do
	case $opt in
	b) BIN=$OPTARG ;;
	n) N=$OPTARG ;;
	s) SECS=$OPTARG ;;
	o) OUT=$OPTARG ;;
	c) COUNT=1 ;;
	w) WARM=1 ;;
	S) SPREAD=1 ;;
	*) sed -n '2,27p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# = 2 ] || { sed -n '2,27p' "$0"; exit 2; }
TEST=$1 P=$2
case $TEST in set | get) ;; *) echo "profile.sh: TEST must be set or get" >&2; exit 2 ;; esac
TOOLS="redis-benchmark redis-cli curl"
[ -z "$COUNT" ] || TOOLS="$TOOLS perf"
for tool in $TOOLS; do
	command -v $tool >/dev/null || { echo "profile.sh: $tool not found (apt-get install redis-tools curl)" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-profile.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
if [ -z "$BIN" ]; then
	BIN=$TMP/ringkv
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/ringkv)
fi
mkdir -p "$OUT"

start() { # start NAME RESP HTTP PEER [JOIN]
	local args=(server --node-id "$1" --data-dir "$TMP/$1" --resp-addr "127.0.0.1:$2" --http-addr "127.0.0.1:$3"
		--peer-addr "127.0.0.1:$4" --replicas 3 --sync batch)
	[ -n "${5:-}" ] && args+=(--join "$5")
	# shellcheck disable=SC2206 # RINGKV_FLAGS is split on purpose
	[ -n "${RINGKV_FLAGS:-}" ] && args+=($RINGKV_FLAGS)
	"$BIN" "${args[@]}" >"$TMP/$1.log" 2>&1 &
	PIDS+=($!)
}
start n1 17001 17101 17201
sleep 1
start n2 17002 17102 17211 127.0.0.1:17201
start n3 17003 17103 17221 127.0.0.1:17201
for ((i = 0; i < 100; i++)); do
	[ "$(curl -s 127.0.0.1:17101/v1/cluster | grep -o '"state":"normal"' | wc -l)" -ge 3 ] && break
	sleep 0.3
done
sleep 2
cpu() { for p in "${PIDS[@]}"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
KEYS=1000000
if [ -n "$WARM" ]; then
	for run in "set 1" "get 1" "set 16"; do
		set -- $run
		redis-benchmark -h 127.0.0.1 -p 17001 -t "$1" -d 100 -r $KEYS -c 50 -n 300000 -P "$2" -q >/dev/null
	done
	for ((i = 0; i < 60; i++)); do # idle: under 2 clock ticks in 0.5 s
		a=$(cpu)
		sleep 0.5
		[ $(($(cpu) - a)) -lt 2 ] && break
	done
elif [ "$TEST" = get ]; then
	KEYS=100000
	redis-benchmark -h 127.0.0.1 -p 17001 -t set -d 100 -r $KEYS -c 50 -n 100000 -P 16 -q >/dev/null
fi
nodecpu() { for p in "${PIDS[@]}"; do awk '{printf "%s ", $14 + $15}' "/proc/$p/stat"; done; }
t0=$(cpu) n0=$(nodecpu)
CP=()
if [ "$SECS" != 0 ]; then
	for i in 1 2 3; do
		curl -s -o "$OUT/$TEST-P$P-n$i.pprof" "127.0.0.1:1710$i/debug/pprof/profile?seconds=$SECS" &
		CP+=($!)
	done
fi
if [ -n "$COUNT" ]; then
	EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_nanosleep
	perf stat -x, -o "$TMP/perf" -e "$EVENTS" -p "$(IFS=,; echo "${PIDS[*]}")" &
	PERF=$!
fi
if [ -z "$SPREAD" ]; then
	redis-benchmark -h 127.0.0.1 -p 17001 -t "$TEST" -d 100 -r $KEYS -c 50 -n "$N" -P "$P" --csv | tail -1 >"$TMP/out"
else
	RB=()
	for i in 1 2 3; do
		redis-benchmark -h 127.0.0.1 -p 1700$i -t "$TEST" -d 100 -r $KEYS -c 17 -n $((N / 3)) -P "$P" --csv | tail -1 >"$TMP/out$i" &
		RB+=($!)
	done
	wait "${RB[@]}"
	N=$((N / 3 * 3))
	cat "$TMP/out1" "$TMP/out2" "$TMP/out3" | tr '\n' ' ' >"$TMP/out"
fi
t1=$(cpu) n1=$(nodecpu)
if [ -n "$COUNT" ]; then
	kill -INT "$PERF"
	wait "$PERF" || true
fi
[ ${#CP[@]} = 0 ] || wait "${CP[@]}"
echo "$TEST -P $P: $(cat "$TMP/out"), server CPU $(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$N" 'BEGIN { printf "%.1f", d * 1000000 / hz / n }') us/request" \
	"($(awk -v a="$n0" -v b="$n1" -v hz="$(getconf CLK_TCK)" -v n="$N" 'BEGIN { k = split(a, x, " "); split(b, y, " "); for (i = 1; i <= k; i++) printf "%sn%d %.1f", (i > 1 ? ", " : ""), i, (y[i] - x[i]) * 1000000 / hz / n }'))"
if [ -n "$COUNT" ]; then
	# perf stat -x, lines: count,unit,event,...
	awk -F, -v n="$N" '$3 ~ /sys_enter/ { sub(/^.*:sys_enter_?/, "", $3); printf "%s%s %.2f", sep, ($3 == "" ? "all" : $3), $1 / n; sep = ", " } END { print " system calls per request (all servers)" }' "$TMP/perf"
fi
