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

# Grafana dashboard JSON Schema (tests/test_dashboards.py): generated from the Dashboard type of
# @grafana/schema with the npm packages pinned in dashboards/schema/ (package-lock.json), installed
# into .tools/npm. Two flavours: lenient (extra properties allowed, as Grafana itself accepts) and
# strict (every property must be one the type declares). Redone only when that lockfile changes.
schema_src="$root/dashboards/schema"
npm_dir="$tools/npm"
lock_sum=$(sha256sum "$schema_src/package-lock.json" | cut -d ' ' -f 1)
if [ ! -s "$tools/dashboard.schema.json" ] || [ ! -s "$tools/dashboard.strict.schema.json" ] \
  || [ "$(cat "$npm_dir/.lock.sha256" 2>/dev/null)" != "$lock_sum" ]; then
  command -v npm >/dev/null || { echo "install-tools: npm is needed for the dashboard schema" >&2; exit 1; }
  echo "install-tools: installing @grafana/schema and ts-json-schema-generator"
  mkdir -p "$npm_dir"
  cp "$schema_src/package.json" "$schema_src/package-lock.json" "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  types="$npm_dir/node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts"
  gen="$npm_dir/node_modules/.bin/ts-json-schema-generator"
  "$gen" --no-type-check --additional-properties --path "$types" --type Dashboard -o "$tools/dashboard.schema.json.tmp"
  "$gen" --no-type-check --path "$types" --type Dashboard -o "$tools/dashboard.strict.schema.json.tmp"
  mv "$tools/dashboard.schema.json.tmp" "$tools/dashboard.schema.json"
  mv "$tools/dashboard.strict.schema.json.tmp" "$tools/dashboard.strict.schema.json"
  echo "$lock_sum" >"$npm_dir/.lock.sha256"
fi
echo "dashboard schema: @grafana/schema $(node -p "require('$npm_dir/node_modules/@grafana/schema/package.json').version")"
