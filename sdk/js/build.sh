#!/usr/bin/env bash
# Build a Warden resource type written in JavaScript into a component:
#
#   sdk/js/build.sh SOURCE.js OUT.wasm
#   sdk/js/build.sh --install-toolchain     # only install the tools (CI)
#
# SOURCE.js exports `resourceType` (see sdk/js/src/resource.js). It is built
# with the pinned componentize-js (sdk/js/toolchain: package.json and its
# package-lock.json), against the contract in wit/ (world `plugin`), with
# the engine's HTTP features disabled: the agent links no wasi:http, and a
# component that imports it would not load. The toolchain is installed
# with `npm ci` once into $WARDEN_JS_TOOLCHAIN (default target/js-toolchain
# of this repository) and reused while its lock file is unchanged.
#
# Relative imports are resolved inside the repository (componentize-js maps
# the current directory as the component's `/` while it pre-initializes),
# so the build runs from the repository root and SOURCE must lie under it.
set -euo pipefail

usage() { echo "usage: $0 SOURCE.js OUT.wasm, or $0 --install-toolchain" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
install_only=
if [ $# -eq 1 ] && [ "$1" = --install-toolchain ]; then
  install_only=1
  set -- /dev/null /dev/null
fi
[ $# -eq 2 ] || usage
source_path="$(realpath -m "$1")"
out="$(realpath -m "$2")"
[ -n "$install_only" ] || case "$source_path" in
  "$root"/*) ;;
  *) echo "$0: $1 is outside $root; its imports could not be resolved" >&2; exit 2 ;;
esac
[ -n "$install_only" ] || [ -f "$source_path" ] || { echo "$0: $1: no such file" >&2; exit 2; }

if ! command -v npm >/dev/null; then
  echo "$0: npm is missing: install Node.js 20 or newer with npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi

toolchain="${WARDEN_JS_TOOLCHAIN:-$root/target/js-toolchain}"
lock="$here/toolchain/package-lock.json"
stamp="$toolchain/node_modules/.warden-lock.sha256"
want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "installing the pinned JavaScript toolchain into $toolchain" >&2
  mkdir -p "$toolchain"
  cp "$here/toolchain/package.json" "$lock" "$toolchain/"
  (cd "$toolchain" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$stamp"
fi
[ -z "$install_only" ] || exit 0

mkdir -p "$(dirname "$out")"
cd "$root"
# Wizer pre-initializes in a temporary directory; a failed build leaves
# nothing half written at OUT.
"$toolchain/node_modules/.bin/componentize-js" \
  --wit "$root/wit" --world-name plugin \
  --disable http fetch-event \
  -o "$out.part" "${source_path#"$root"/}"
mv "$out.part" "$out"
