#!/usr/bin/env bash
# Installs the system packages rade needs to build and test, when they are missing:
# cmake and the curl/ssl headers for the bundled librdkafka, Java 17 and Maven for the
# local Kafka broker and the Java producer of the conformance test, Go for its Go producer.
# Uses apt-get (Debian); as root, or through sudo when available.
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v javac >/dev/null || need+=(openjdk-17-jdk-headless)
# tests/producers/go needs Go 1.19 or later (Debian 12's golang-go).
command -v go >/dev/null || need+=(golang-go)
command -v python3 >/dev/null || need+=(python3 python3-venv)
command -v curl >/dev/null || need+=(curl)
# prometheus brings the server and promtool for the metrics tests and manifest checks.
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
for pkg in libcurl4-openssl-dev libssl-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [[ ${#need[@]} -eq 0 ]]; then
  exit 0
fi
echo "deps.sh: installing ${need[*]}" >&2
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
$SUDO apt-get update -qq
# No service of a package is started here: the tests start what they need themselves.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
