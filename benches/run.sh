#!/usr/bin/env bash
# `make bench`: criterion micro benchmarks, then the end-to-end harness against a real
# local broker (started and stopped here). Figures go to stdout; benches/README.md keeps
# the ones of the last recorded run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
KAFKA="deploy/local/kafka.sh"
trap '"$KAFKA" down || true' EXIT INT TERM

cargo build --release --locked -p rade -p rade-benches --bins
cargo bench --locked -p rade-benches --bench decode -- --noplot
BOOTSTRAP="$("$KAFKA" up)"
"${CARGO_TARGET_DIR:-target}/release/e2e" --bootstrap "$BOOTSTRAP" --records "${RADE_BENCH_RECORDS:-1000000}"
