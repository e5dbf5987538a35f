#!/usr/bin/env bash
# Installs the real components the test suite runs against into .tools/ (idempotent, offline-safe
# once cached): Prometheus + promtool, the static binaries taken out of Debian's package.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools=${TOOLS_DIR:-$root/.tools}
mkdir -p "$tools/bin" "$tools/debs"

if [ ! -x "$tools/bin/promtool" ] || [ ! -x "$tools/bin/prometheus" ]; then
  echo "install-tools: fetching Debian's prometheus package"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null; fi
  (cd "$tools/debs" && apt-get download -qq -o APT::Sandbox::User=root prometheus >/dev/null)
  dpkg -x "$(ls "$tools"/debs/prometheus_*.deb | head -n 1)" "$tools/root"
  ln -sf "$tools/root/usr/bin/prometheus" "$tools/bin/prometheus"
  ln -sf "$tools/root/usr/bin/promtool" "$tools/bin/promtool"
fi
"$tools/bin/promtool" --version 2>&1 | head -n 1
