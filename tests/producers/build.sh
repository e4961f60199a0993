#!/usr/bin/env bash
# Makes the foreign producers of the conformance suite (tests/tests/conformance.rs) ready and
# prints where they are, as KEY=value lines:
#   JAVA_CP   classpath of the Java producer (Produce.java compiled, Avro and kafka-clients
#             from Maven Central)
#   GO_BIN    the Go producer (goavro and franz-go from the Go module proxy)
# and installs the Python producers' packages (fastavro, avro, kafka-python; pyarrow for the
# reader) into the test venv. Everything is cached under ${RADE_CACHE:-~/.cache/rade}/producers,
# keyed by a hash of its sources, so a second run costs a few checks. A missing toolchain is an
# error naming it: the suite never skips a producer.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${RADE_CACHE:-$HOME/.cache/rade}"
CACHE="$ROOT/producers"
PY="${RADE_TEST_PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$CACHE"

for tool in java javac mvn go; do
  command -v "$tool" >/dev/null || {
    echo "build.sh: the conformance producers need \`$tool\` (make deps installs it)" >&2
    exit 1
  }
done

# Python: the versions the suite was written against.
"$PY" -c "import fastavro, avro, kafka, pyarrow" 2>/dev/null ||
  "$PY" -m pip install -q --disable-pip-version-check fastavro==1.13.1 avro==1.12.2 kafka-python==3.0.12 pyarrow >&2

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# Java: dependencies once per pom, Produce.java compiled once per version of it.
JAVA="$CACHE/java-$(hash_of "$HERE/java/pom.xml" "$HERE/java/Produce.java")"
if [[ ! -f "$JAVA/classes/Produce.class" ]]; then
  rm -rf "$JAVA.tmp"
  mvn -q -f "$HERE/java/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$JAVA.tmp/lib" >&2
  javac -nowarn -cp "$JAVA.tmp/lib/*" -d "$JAVA.tmp/classes" "$HERE/java/Produce.java" >&2
  rm -rf "$JAVA" && mv "$JAVA.tmp" "$JAVA"
fi

# Go: modules and build cache under the same cache, the binary once per version of the sources.
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS=-mod=readonly
GO_BIN="$CACHE/go-produce-$(hash_of "$HERE/go/go.mod" "$HERE/go/go.sum" "$HERE/go/main.go")"
if [[ ! -x "$GO_BIN" ]]; then
  (cd "$HERE/go" && go build -o "$GO_BIN.tmp" .) >&2
  mv "$GO_BIN.tmp" "$GO_BIN"
fi

echo "JAVA_CP=$JAVA/classes:$JAVA/lib/*"
echo "GO_BIN=$GO_BIN"
