#!/usr/bin/env bash
# `make test`: starts the services the integration tests need, runs every test of the
# workspace against them, and stops the services whatever happens.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/../.."

cleanup() { "$HERE/kafka.sh" down || true; }
trap cleanup EXIT INT TERM

# Build first, while no broker holds memory, so a build failure reads as one.
cargo build --workspace --all-targets --locked
# The deployment files, with real tools (promtool, kubernetes-validate) and rade's own loader.
RADE_BIN="${CARGO_TARGET_DIR:-target}/debug/rade" deploy/check.sh
RADE_TEST_BOOTSTRAP="$("$HERE/kafka.sh" up)"
export RADE_TEST_BOOTSTRAP
echo "test.sh: Kafka at $RADE_TEST_BOOTSTRAP" >&2
# RUST_TEST_THREADS, not --test-threads: criterion benches run once in test mode and
# refuse libtest's flags.
RUST_TEST_THREADS="${RADE_TEST_THREADS:-2}" cargo test --workspace --all-targets --locked
