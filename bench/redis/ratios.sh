#!/usr/bin/env bash
# The issue's CPU ratio, three nodes ÷ one node, measured in interleaved
# rounds: one run of run.sh takes one target after the other, and on a
# shared VM the machine's speed moves between them, so that a single
# run's ratio moves by a third from run to run. This runs run.sh once per
# target and round, alternating which target goes first, and reports each
# round's server CPU per request and ratios, and their medians.
#
#   bench/redis/ratios.sh [-r ROUNDS] [-n REQUESTS] [-b RINGKV_BINARY]
#
# -r defaults to 4, -n (run.sh's, per test) to 300000; -b benchmarks a
# ringkv binary built elsewhere instead of building this checkout. Each
# run is run.sh's (SET then GET at -P 1 and -P 16, redis-benchmark -c 50
# -d 100 -r 1000000); the reports of every run are kept in a directory
# named at the end.
set -euo pipefail

ROUNDS=4 N=300000 BIN=
while getopts "r:n:b:h" opt; do
	case $opt in
	r) ROUNDS=$OPTARG ;;
	n) N=$OPTARG ;;
	b) BIN=$OPTARG ;;
	*) sed -n '2,15p' "$0"; exit 2 ;;
	esac
done
case $ROUNDS in '' | *[!0-9]* | 0) echo "ratios.sh: -r must be a positive integer" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/ringkv-ratios.XXXXXX")
if [ -z "$BIN" ]; then
	BIN=$OUT/ringkv
	(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/ringkv)
fi

# cpu_row FILE LABEL: the four CPU µs/request figures of LABEL's row in
# run.sh's CPU table (SET -P 1, GET -P 1, SET -P 16, GET -P 16).
cpu_row() {
	awk -F'|' -v l="$2" '{
		name = $2; gsub(/^ +| +$/, "", name); v = $3; gsub(/ /, "", v)
		if (name == l && v ~ /^[0-9.]+$/) { for (i = 3; i <= 6; i++) { x = $i; gsub(/ /, "", x); printf "%s%s", x, (i < 6 ? " " : "\n") } }
	}' "$1"
}

ROWS=$OUT/rows.txt
: >"$ROWS"
for ((r = 1; r <= ROUNDS; r++)); do
	order="ringkv-1-batch ringkv-3-batch"
	[ $((r % 2)) = 0 ] && order="ringkv-3-batch ringkv-1-batch"
	for t in $order; do
		echo "# round $r: $t" >&2
		"$ROOT/bench/redis/run.sh" -n "$N" -t "$t" -b "$BIN" >"$OUT/round$r-$t.md"
	done
	one=$(cpu_row "$OUT/round$r-ringkv-1-batch.md" "ringkv, 1 node, --sync batch")
	three=$(cpu_row "$OUT/round$r-ringkv-3-batch.md" "ringkv, 3 nodes (N=3, R=W=2), --sync batch")
	[ -n "$one" ] && [ -n "$three" ] || { echo "ratios.sh: no CPU figures in round $r's reports ($OUT)" >&2; exit 1; }
	echo "$r ${order%% *} $one $three" >>"$ROWS"
done

echo "### Server CPU per request, three nodes ÷ one node, $ROUNDS interleaved rounds"
echo
echo "- $(date -u +%Y-%m-%dT%H:%M:%SZ), binary $BIN, run.sh -n $N per test and target; reports in $OUT"
echo
echo "| round | first | 1 node SET -P 1 / GET -P 1 / SET -P 16 / GET -P 16 µs | 3 nodes, same | ratio SET -P 1 | GET -P 1 | SET -P 16 | GET -P 16 |"
echo "|--:|---|---|---|--:|--:|--:|--:|"
awk '{ printf "| %s | %s | %s / %s / %s / %s | %s / %s / %s / %s | %.2f | %.2f | %.2f | %.2f |\n",
	$1, ($2 == "ringkv-1-batch" ? "1 node" : "3 nodes"), $3, $4, $5, $6, $7, $8, $9, $10,
	$7 / $3, $8 / $4, $9 / $5, $10 / $6 }' "$ROWS"
echo
# median COLUMN: the median of one ratio column over the rounds.
median() { awk -v c="$1" '{ print $(c + 4) / $c }' "$ROWS" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
range() { awk -v c="$1" '{ print $(c + 4) / $c }' "$ROWS" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f–%.2f", lo, hi }'; }
echo "Median ratio (range) over the rounds, and the issue's goals: SET -P 1 $(median 3) ($(range 3)), GET -P 1 $(median 4) ($(range 4)), SET -P 16 $(median 5) ($(range 5)), GET -P 16 $(median 6) ($(range 6)); goals ≤ 3.5 for SET, ≤ 2.5 for GET."
