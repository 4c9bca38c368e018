#!/usr/bin/env bash
# Installs kubetensor's pinned npm tools (solc-js, anvil) once per version, outside the clone.
#
# Called by `make tools` (and by hand: tools/npm-tools.sh [solc|anvil ...], default both). Each tool
# has a package.json with an exact version and a package-lock.json with every tarball's integrity
# hash under tools/npm/<tool>/, the single place its version is written. It is installed with
# `npm ci --ignore-scripts` (the lock is obeyed exactly, no install scripts run) into
#   ${KT_CACHE:-~/.cache/kubetensor}/npm/<package>-<version>/
# and a later run that finds the folder complete skips it. Install scripts are skipped on purpose:
# @foundry-rs/anvil's postinstall would download a binary when its platform package is missing;
# here the platform package (an optional dependency holding the native binary) comes from the lock,
# and the script links the binary to <folder>/anvil. Needs node >= 18 and npm on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KT_CACHE:-$HOME/.cache/kubetensor}
log() { printf '[npm-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v node >/dev/null || { log "node (>= 18) is needed to install the npm tools (none on PATH)"; exit 1; }
command -v npm >/dev/null || { log "npm is needed to install the npm tools (none on PATH)"; exit 1; }

# The exact version of package $2 pinned by tools/npm/$1/package.json.
pinned() {
  node -e 'const p = require(process.argv[1]); const v = p.dependencies[process.argv[2]];
    if (!/^\d+\.\d+\.\d+$/.test(v)) { console.error("not an exact version: " + v); process.exit(1); }
    console.log(v)' "$here/npm/$1/package.json" "$2"
}

# npm ci the lock of tools/npm/$1 into $2 (built in a temporary folder, moved into place when whole).
install_lock() {
  local tool=$1 out=$2
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  cp "$here/npm/$tool/package.json" "$here/npm/$tool/package-lock.json" "$out.tmp/"
  (cd "$out.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
}

install_solc() {
  local v out
  v=$(pinned solc solc)
  out=$cache/npm/solc-$v
  [ -f "$out/.complete" ] && return
  log "installing solc-js $v into $out"
  install_lock solc "$out"
  local got
  got=$(cd "$out.tmp" && node -e 'console.log(require("solc").version())')
  case $got in "$v+"*) ;; *) log "solc-js reports version $got, expected $v+..."; exit 1 ;; esac
  touch "$out.tmp/.complete"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

install_anvil() {
  local v out platform
  v=$(pinned anvil @foundry-rs/anvil)
  out=$cache/npm/anvil-$v
  [ -f "$out/.complete" ] && [ -x "$out/anvil" ] && return
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) platform=linux-amd64 ;;
    Linux-aarch64) platform=linux-arm64 ;;
    Darwin-x86_64) platform=darwin-amd64 ;;
    Darwin-arm64) platform=darwin-arm64 ;;
    *) log "anvil's npm package ships no binary for $(uname -s)-$(uname -m)"; exit 1 ;;
  esac
  log "installing anvil $v ($platform) into $out"
  install_lock anvil "$out"
  local binary=node_modules/@foundry-rs/anvil-$platform/bin/anvil
  [ -x "$out.tmp/$binary" ] || { log "the lock installed no $binary"; exit 1; }
  ln -sfn "$binary" "$out.tmp/anvil"
  "$out.tmp/anvil" --version | grep -q "anvil Version: $v" \
    || { log "anvil reports the wrong version: $("$out.tmp/anvil" --version | head -1)"; exit 1; }
  touch "$out.tmp/.complete"
  rm -rf "$out" && mv "$out.tmp" "$out"
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(solc anvil)
for t in "${tools[@]}"; do
  case $t in
    solc) install_solc ;;
    anvil) install_anvil ;;
    *) log "unknown npm tool '$t' (known: solc anvil)"; exit 2 ;;
  esac
done
log "npm tools ready in $cache/npm"
