#!/usr/bin/env bash
# `make test`: starts the services the integration tests need, runs every test of the
# workspace against them, and stops the services whatever happens.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/../.."

cleanup() {
  "$HERE/kafka.sh" down || true
  [[ -n "${S3_PID:-}" ]] && kill "$S3_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Build first, while no broker holds memory, so a build failure reads as one.
cargo build --workspace --all-targets --locked
# The deployment files, with real tools (promtool, kubernetes-validate) and rade's own loader.
RADE_BIN="${CARGO_TARGET_DIR:-target}/debug/rade" deploy/check.sh
mkdir -p "${RADE_STATE:-.local}"
# An S3-compatible server (moto, from PyPI, in the venv check.sh made) for the s3:// lake.
VENV="${RADE_CACHE:-$HOME/.cache/rade}/venv"
[[ -x "$VENV/bin/moto_server" ]] || "$VENV/bin/pip" install -q 'moto[server]'
# The readers of the interoperability and GIS tests: pyarrow, deltalake (delta-rs's Python
# package: DeltaTable, and what Polars' scan_delta needs), DuckDB and Polars; DuckDB's spatial
# and delta extensions from PyPI (duckdb-ext-spatial and duckdb-ext-delta ship the extension
# files, no download at LOAD; they require exactly duckdb 1.4.4) and GeoPandas.
"$VENV/bin/python" -c "import pyarrow, polars, geopandas, duckdb, deltalake, importlib.metadata as m; assert duckdb.__version__ == '1.4.4' and deltalake.__version__ == '1.6.6' and m.version('duckdb-ext-spatial') == m.version('duckdb-ext-delta') == '1.4.4.20260205'" 2>/dev/null \
  || "$VENV/bin/pip" install -q pyarrow polars 'deltalake==1.6.6' 'duckdb==1.4.4' 'duckdb-ext-spatial==1.4.4.20260205' 'duckdb-ext-delta==1.4.4.20260205' 'geopandas==1.2.0'
# fastavro and the Apache `avro` package: the fingerprints rade-schema's tests compare with.
"$VENV/bin/python" -c "import fastavro, avro" 2>/dev/null || "$VENV/bin/pip" install -q fastavro avro
# Also runs deploy/local/s3fault.py (standard library only), the proxy through which the S3
# tests inject transient errors in front of moto.
export RADE_TEST_PYTHON="$VENV/bin/python"
# The foreign producers of the conformance test (Java, Go, and the Python packages), built
# once and cached under ~/.cache/rade/producers; the test itself also calls this.
tests/producers/build.sh >/dev/null
S3_PORT="${RADE_TEST_S3_PORT:-9400}"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"${RADE_STATE:-.local}/moto.log" 2>&1 &
S3_PID=$!
export RADE_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$RADE_TEST_S3_ENDPOINT/" && break
  sleep 0.2
done
curl -sf -o /dev/null "$RADE_TEST_S3_ENDPOINT/" || { echo "test.sh: the S3 server did not start" >&2; exit 1; }
RADE_TEST_BOOTSTRAP="$("$HERE/kafka.sh" up)"
export RADE_TEST_BOOTSTRAP
echo "test.sh: Kafka at $RADE_TEST_BOOTSTRAP" >&2
# RUST_TEST_THREADS, not --test-threads: criterion benches run once in test mode and
# refuse libtest's flags.
RUST_TEST_THREADS="${RADE_TEST_THREADS:-2}" cargo test --workspace --all-targets --locked --no-fail-fast
