#!/usr/bin/env bash
# Build this resource type into a component: ./build.sh [OUT.wasm]
# (default build/tcp_service.wasm). Needs componentize-py at the version
# requirements.txt pins, on PATH or named by $COMPONENTIZE_PY:
#   python3 -m venv .venv && .venv/bin/pip install -r requirements.txt
#   COMPONENTIZE_PY=.venv/bin/componentize-py ./build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tool="${COMPONENTIZE_PY:-componentize-py}"
if [ -z "${COMPONENTIZE_PY:-}" ] && [ -x "$here/.venv/bin/componentize-py" ]; then
  tool="$here/.venv/bin/componentize-py"
fi
pinned="$(sed -n 's/^componentize-py==//p' "$here/requirements.txt")"
found="$("$tool" --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$found" != "$pinned" ]; then
  echo "build.sh: needs componentize-py $pinned (pip install -r requirements.txt);" \
       "found ${found:-none} at $tool" >&2
  exit 1
fi
out="${1:-$here/build/tcp_service.wasm}"
mkdir -p "$(dirname "$out")"
# wit/ is the contract of the agent that wrote this project; app.py is the
# app module; warden_sdk/ and resource_type.py are the SDK.
"$tool" -d "$here/wit" -w plugin componentize -p "$here" app -o "$out"
