#!/usr/bin/env bash
# The project's test suite: vet, unit and property tests, the race detector
# on the storage engine, short fuzzing of every decoder, and the real-process
# crash loop. Bounded: about 10 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l $(find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi

echo "== go vet"
go vet ./...

echo "== go test (race detector on the storage engine)"
go test -race -count=1 -timeout 15m ./storage/...

echo "== go test (everything else)"
others=$(go list ./... | grep -v '/storage' || true)
if [ -n "$others" ]; then go test -count=1 -timeout 15m $others; fi

echo "== fuzz (a few seconds per target)"
fuzz() { go test -run='^$' -fuzz="^$2\$" -fuzztime="${FUZZTIME:-5s}" "$1"; }
fuzz ./storage/wal FuzzReader
fuzz ./storage/manifest FuzzDecodeVersionEdit
fuzz ./storage/sstable FuzzBlockDecoder
fuzz ./storage/sstable FuzzFooterIndex
fuzz ./storage/bloom FuzzMayContain
echo "== all tests passed"
