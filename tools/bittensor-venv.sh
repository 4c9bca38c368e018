#!/usr/bin/env bash
# Creates the separate environment with bittensor==10.5.0 that the network bench's peer baseline
# (tests/bench/dendrite_baseline.py) runs in, and prints its python (called by `make bench-dendrite`).
#
# It lives once per machine in
#   ${KT_CACHE:-~/.cache/kubetensor}/venvs/bittensor-<hash of requirements/bittensor-baseline.txt>/
# and is installed with --no-deps from that pinned closure, so the baseline is measured on exactly
# the same packages every time. Never the project's .venv: bittensor's pins conflict with ours.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PYTHON=${PYTHON:-python3.11}
cache=${KT_CACHE:-$HOME/.cache/kubetensor}
log() { printf '[bittensor-venv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v "$PYTHON" >/dev/null || { log "Python 3.11 is needed: $PYTHON is not on PATH (set PYTHON=...)"; exit 1; }
lock=requirements/bittensor-baseline.txt
key=$( (cat "$lock"; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
env=$cache/venvs/bittensor-$key
if [ ! -f "$env/.complete" ]; then
  log "building $env (bittensor 10.5.0 and its pinned dependencies; cold: a minute or two)"
  t0=$SECONDS
  rm -rf "$env"
  mkdir -p "$cache/venvs"
  "$PYTHON" -m venv "$env"
  "$env/bin/pip" install -q --upgrade pip==25.3
  "$env/bin/pip" install -q --no-deps -r "$lock"
  "$env/bin/python" -c 'import bittensor, bittensor_wallet' \
    || { log "bittensor does not import in $env"; exit 1; }
  touch "$env/.complete"
  log "built in $((SECONDS - t0))s"
fi
echo "$env/bin/python"
