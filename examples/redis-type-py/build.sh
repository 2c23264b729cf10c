#!/usr/bin/env bash
# Build the Python Redis type into a component:
#   examples/redis-type-py/build.sh [OUT.wasm]
# (default target/wasm-examples/redis_type_py.wasm). Needs componentize-py at
# the version requirements.txt pins, on PATH or named by $COMPONENTIZE_PY.
# $WARDEN_WIT names another contract directory than the repository's wit/
# (wit/released/0.3.0 for an agent that predates contract 0.4.0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tool="${COMPONENTIZE_PY:-componentize-py}"
pinned="$(sed -n 's/^componentize-py==//p' "$here/requirements.txt")"
found="$("$tool" --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$found" != "$pinned" ]; then
  echo "build.sh: needs componentize-py $pinned (pip install -r $here/requirements.txt);" \
       "found ${found:-none} at $tool" >&2
  exit 1
fi
out="${1:-$root/target/wasm-examples/redis_type_py.wasm}"
mkdir -p "$(dirname "$out")"
# The app module is app.py; the SDK (warden_sdk and its resource_type
# module) comes from sdk/python; the world is the contract's `plugin`.
"$tool" -d "${WARDEN_WIT:-$root/wit}" -w plugin componentize \
  -p "$here" -p "$root/sdk/python" app -o "$out"
