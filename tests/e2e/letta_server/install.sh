#!/usr/bin/env bash
# Installs a real Letta server into its own virtualenv under .tools/letta-<version>/ for the e2e
# tier (tests/e2e). Idempotent: does nothing when the venv is already complete for the same pins.
# Adapted from the tested offline Letta recipe's install script; only PyPI is contacted.
#
#   tests/e2e/letta_server/install.sh [0.16.8|0.11.7]     (default 0.16.8; TOOLS_DIR overrides .tools)
#
# 0.16.8: letta[server,sqlite] with the exact pins of letta's uv.lock at that tag
#         (constraints-0.16.8.txt; without them today's resolver picks deps Letta does not import
#         with), plus asyncpg/pg8000/pgvector/redis, plus PostgreSQL 16 + pgvector binaries from
#         the `pgserver` wheel (0.12+ cannot use SQLite).
# 0.11.7: see constraints-0.11.7.txt (SQLite, no PostgreSQL needed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
version=${1:-0.16.8}
tools=${TOOLS_DIR:-$root/.tools}
dir="$tools/letta-$version"
venv="$dir/venv"
constraints="$here/constraints-$version.txt"
[ -f "$constraints" ] || { echo "install-letta: no constraints file for letta $version" >&2; exit 1; }
case "$version" in
  0.16.8) extra=(asyncpg pg8000 pgvector redis); with_pg=1 ;;
  0.11.7) extra=(); with_pg=0 ;;
  *) echo "install-letta: unsupported letta version $version" >&2; exit 1 ;;
esac
stamp=$(cat "$constraints" "$0" | sha256sum | cut -d ' ' -f 1)
if [ -x "$venv/bin/letta" ] && [ "$(cat "$dir/.installed" 2>/dev/null)" = "$stamp" ]; then
  echo "letta $version: already installed in $venv"
  exit 0
fi
py=${PYTHON:-python3}   # letta 0.16.8 needs Python >= 3.11, < 3.14
echo "install-letta: installing letta $version into $venv (about a minute, ~1.2 GB)"
start=$(date +%s)
rm -rf "$venv" "$dir/.installed"
mkdir -p "$dir"
"$py" -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "letta[server,sqlite]==$version" "${extra[@]}" -c "$constraints"
if [ "$with_pg" = 1 ]; then
  # PostgreSQL 16.2 + pgvector 0.6.2 (manylinux); only its pginstall/bin is used, so no deps.
  "$venv/bin/pip" install -q --no-deps pgserver==0.1.4
  "$venv/bin/python" -c "import importlib.util as u, asyncpg, pg8000, pgvector, redis; assert u.find_spec('pgserver')"
fi
"$venv/bin/python" -c "import letta; print('install-letta: letta', letta.__version__, 'installed')"
echo "$stamp" >"$dir/.installed"
echo "install-letta: done in $(( $(date +%s) - start ))s"
