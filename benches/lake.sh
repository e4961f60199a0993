#!/usr/bin/env bash
# The lake benchmarks, part of `make bench` and runnable alone (no Kafka needed):
#   1. write throughput of raw files through Lake::write_raw to memory (encoding only, the
#      baseline), local disk and S3, the last on moto's S3-compatible server, started here
#      unless one already answers on the port, and then stopped;
#   2. the README's example queries over a lake of 10 million rows generated under
#      $TMPDIR, with and without partition pruning; the lake is deleted afterwards.
# Environment: RADE_BENCH_S3_PORT (default 9400), RADE_BENCH_LAKE_ROWS (default 10000000).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
BIN="${CARGO_TARGET_DIR:-target}/release"
PORT="${RADE_BENCH_S3_PORT:-9400}"
S3_ENDPOINT="http://127.0.0.1:$PORT"
QUERY_LAKE="${TMPDIR:-/tmp}/rade-bench-lake-$$"
cleanup() {
  [[ -n "${S3_PID:-}" ]] && kill "$S3_PID" 2>/dev/null || true
  rm -rf "$QUERY_LAKE"
}
trap cleanup EXIT INT TERM

cargo build --release --locked -p rade-benches --bin lake-write --bin lake-query
if ! curl -sf -o /dev/null "$S3_ENDPOINT/"; then
  # moto from PyPI, in the venv that deploy/check.sh and `make test` use.
  VENV="${RADE_CACHE:-$HOME/.cache/rade}/venv"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  [[ -x "$VENV/bin/moto_server" ]] || "$VENV/bin/pip" install -q --disable-pip-version-check 'moto[server]'
  mkdir -p "${RADE_STATE:-.local}"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"${RADE_STATE:-.local}/moto-bench.log" 2>&1 &
  S3_PID=$!
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$S3_ENDPOINT/" && break
    sleep 0.2
  done
  curl -sf -o /dev/null "$S3_ENDPOINT/" || { echo "lake.sh: the S3 server did not start" >&2; exit 1; }
fi
BUCKET="rade-bench-$$"
curl -sf -o /dev/null -X PUT "$S3_ENDPOINT/$BUCKET"
AWS_ACCESS_KEY_ID=rade-bench AWS_SECRET_ACCESS_KEY=rade-bench AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true \
  AWS_ENDPOINT="$S3_ENDPOINT" "$BIN/lake-write" --s3 "s3://$BUCKET/write"
curl -sf -o /dev/null -X DELETE "$S3_ENDPOINT/$BUCKET" || true
"$BIN/lake-query" --lake "$QUERY_LAKE" --rows "${RADE_BENCH_LAKE_ROWS:-10000000}"
