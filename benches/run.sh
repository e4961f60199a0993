#!/usr/bin/env bash
# `make bench`: criterion micro benchmarks, the end-to-end harness and the live alert latency
# against a real local broker (started and stopped here), the window harness, then the lake benchmarks
# (benches/lake.sh). Figures go to stdout; benches/README.md keeps the ones of the last
# recorded run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
KAFKA="deploy/local/kafka.sh"
BIN="${CARGO_TARGET_DIR:-target}/release"
trap '"$KAFKA" down || true' EXIT INT TERM

cargo build --release --locked -p rade -p rade-benches --bins
cargo bench --locked -p rade-benches --bench decode -- --noplot
BOOTSTRAP="$("$KAFKA" up)"
"$BIN/e2e" --bootstrap "$BOOTSTRAP" --records "${RADE_BENCH_RECORDS:-1000000}"
# Live alert latency at the territory's rate and at 100 times it (about 8 minutes).
"$BIN/latency" --bootstrap "$BOOTSTRAP" --rate 200,20000
# Window and rule cost without Kafka, and peak memory, at 10 000 and 100 000 sensors.
echo "| sensors | windows | records | decode+buffer ns/record | windows+rules ns/record | windows/decode | windows closed | alerts | peak RSS (MiB) |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for sensors in 10000 100000; do
  "$BIN/windows" --sensors "$sensors" --windows 1m,15m,1h
  "$BIN/windows" --sensors "$sensors"
done

# The lake benchmarks need no broker.
"$KAFKA" down
benches/lake.sh
