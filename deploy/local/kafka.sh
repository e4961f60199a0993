#!/usr/bin/env bash
# Runs a real single-node Apache Kafka 4.x broker (KRaft, broker+controller in one
# JVM) on this machine, without Docker: the jars come from Maven Central through
# deploy/local/kafka/pom.xml.
#
#   deploy/local/kafka.sh up      fetch jars (once), format fresh storage, start,
#                                 wait until ready; prints the bootstrap address
#                                 (the only thing written to stdout)
#   deploy/local/kafka.sh down    stop it (SIGTERM, up to 30 s, then SIGKILL)
#   deploy/local/kafka.sh status  exit 0 and say so when it runs, exit 3 when not
#
# Listeners (all on 127.0.0.1):
#   PLAINTEXT       ${RADE_KAFKA_PORT:-9092}             (also inter-broker)
#   SASL_PLAINTEXT  ${RADE_KAFKA_SASL_PORT:-9094}        SCRAM-SHA-256, SCRAM-SHA-512
#                                                        and PLAIN; user rade/rade-secret
#   CONTROLLER      ${RADE_KAFKA_CONTROLLER_PORT:-9093}
#
# Environment:
#   RADE_CACHE                  jar cache root (default ~/.cache/rade); jars go to
#                               $RADE_CACHE/kafka-<version>/lib
#   RADE_STATE                  state root (default <repo>/.local); the broker's config,
#                               data, log and pid live in $RADE_STATE/kafka, wiped on `up`
#   RADE_KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
#   RADE_KAFKA_JAVA_OPTS        extra JVM options for the broker
#   JAVA_HOME                   Java 17+ to use (default: java on PATH)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"
LOG4J2_CONFIG="$SCRIPT_DIR/kafka/log4j2.yaml"

# The pom is the one place that names the Kafka version.
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || { echo "kafka.sh: no <kafka.version> in $POM" >&2; exit 1; }

HOST=127.0.0.1
PORT="${RADE_KAFKA_PORT:-9092}"
SASL_PORT="${RADE_KAFKA_SASL_PORT:-9094}"
CONTROLLER_PORT="${RADE_KAFKA_CONTROLLER_PORT:-9093}"
START_TIMEOUT="${RADE_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30
SASL_USER=rade
SASL_PASSWORD=rade-secret

CACHE_DIR="${RADE_CACHE:-$HOME/.cache/rade}/kafka-$KAFKA_VERSION"
LIB_DIR="$CACHE_DIR/lib"
STATE_ROOT="${RADE_STATE:-$REPO_ROOT/.local}"
STATE_DIR="$STATE_ROOT/kafka"
CONFIG_FILE="$STATE_DIR/server.properties"
DATA_DIR="$STATE_DIR/data"
LOG_FILE="$STATE_DIR/kafka.log"
PID_FILE="$STATE_DIR/kafka.pid"
READY_LINE="Kafka Server started"

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "no java found: install a JDK 17+ or set JAVA_HOME"
  fi
}

check_java() {
  local java major
  java="$(java_bin)"
  major="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [[ -n "$major" && "$major" -ge 17 ]] \
    || die "Kafka $KAFKA_VERSION needs Java 17+, but $java is version '${major:-unknown}'"
}

# Pid of the running broker started by this script, or nothing.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 0
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  # Guard against pid reuse: it must be a kafka.Kafka JVM on our config file.
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  if [[ "$cmdline" == *kafka.Kafka* && "$cmdline" == *"$CONFIG_FILE"* ]]; then
    echo "$pid"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

lib_stamp() {
  # Refetch when the pom changes (e.g. a version bump or an added dependency).
  sha256sum "$POM" | cut -d' ' -f1
}

fetch_jars() {
  local stamp
  stamp="$(lib_stamp)"
  if [[ -f "$LIB_DIR/.complete" && "$(cat "$LIB_DIR/.complete")" == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install -y maven) to fetch the Kafka jars"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR"
  mkdir -p "$CACHE_DIR"
  local tmp
  tmp="$(mktemp -d "$CACHE_DIR/lib.tmp.XXXXXX")"
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >&2; then
    rm -rf "$tmp"
    die "mvn could not fetch the Kafka jars (see its output above)"
  fi
  local jar
  for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar" \
             'log4j-core-*.jar' 'log4j-slf4j-impl-*.jar' 'slf4j-api-*.jar'; do
    compgen -G "$tmp/$jar" >/dev/null || { rm -rf "$tmp"; die "fetched classpath lacks $jar"; }
  done
  echo "$stamp" >"$tmp/.complete"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
}

write_config() {
  cat >"$CONFIG_FILE" <<EOF
# Written by deploy/local/kafka.sh; rewritten on every \`up\`.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER

listeners=PLAINTEXT://$HOST:$PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT

# SASL on the SASL_PLAINTEXT listener. SCRAM users are stored in the metadata log
# (created at format time with --add-scram); PLAIN users are the user_<name> entries.
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SASL_USER" password="$SASL_PASSWORD" user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;

log.dirs=$DATA_DIR

# Test-friendly defaults: one replica everywhere, few partitions, no delays.
auto.create.topics.enable=true
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=4
group.initial.rebalance.delay.ms=0

# Small footprint for a 2-core test machine.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=2097152
EOF
}

# A cluster id as StorageTool random-uuid makes one (16 random bytes, base64url,
# no padding, not starting with '-'), without paying for a JVM start.
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ ${#id} -eq 22 && "$id" != -* ]] && { echo "$id"; return; }
  done
}

cmd_up() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    log "already running (pid $pid)"
    echo "$HOST:$PORT"
    return 0
  fi
  local p
  for p in "$PORT" "$SASL_PORT" "$CONTROLLER_PORT"; do
    port_in_use "$p" && die "port $HOST:$p is already in use by another process (another Kafka?); free it or set RADE_KAFKA_PORT / RADE_KAFKA_SASL_PORT / RADE_KAFKA_CONTROLLER_PORT"
  done

  check_java
  fetch_jars
  local java
  java="$(java_bin)"

  rm -rf "$STATE_DIR"
  mkdir -p "$STATE_DIR" "$DATA_DIR"
  write_config

  local cluster_id
  cluster_id="$(new_cluster_id)"
  if ! "$java" -Xmx256m -Dlog4j2.configurationFile="$LOG4J2_CONFIG" -cp "$LIB_DIR/*" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG_FILE" \
        --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]" \
        --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" \
        >"$STATE_DIR/format.log" 2>&1; then
    cat "$STATE_DIR/format.log" >&2
    die "formatting $DATA_DIR failed"
  fi

  log "starting Kafka $KAFKA_VERSION (log: $LOG_FILE)"
  # shellcheck disable=SC2086 # RADE_KAFKA_JAVA_OPTS is a list of options
  nohup "$java" -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J2_CONFIG" ${RADE_KAFKA_JAVA_OPTS:-} \
    -cp "$LIB_DIR/*" kafka.Kafka "$CONFIG_FILE" </dev/null >>"$LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local deadline=$((SECONDS + START_TIMEOUT))
  until grep -q "$READY_LINE" "$LOG_FILE" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker exited during startup; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "Kafka did not start"
    fi
    if ((SECONDS >= deadline)); then
      log "broker not ready after ${START_TIMEOUT}s; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2 || true
      cmd_down
      die "Kafka did not start within ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "ready: PLAINTEXT $HOST:$PORT, SASL_PLAINTEXT $HOST:$SASL_PORT (user $SASL_USER), pid $pid"
  echo "$HOST:$PORT"
}

cmd_down() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    echo "kafka $KAFKA_VERSION running (pid $pid): PLAINTEXT $HOST:$PORT, SASL_PLAINTEXT $HOST:$SASL_PORT"
    return 0
  fi
  echo "kafka not running"
  return 3
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 {up|down|status}" >&2
    exit 2
    ;;
esac
