#!/usr/bin/env bash
# Prepare the venv that trains a process reward model from `ttcq export --format trl`
# (lab/prm_training.py): CPU torch and TRL's PRMTrainer with the versions checked to work
# together here. Cached under $TTCQ_SERVER_CACHE (~/.cache/ttcq-servers) in a folder keyed
# by the python and every pin, so a second run costs a second. Prints the venv's python
# on stdout (progress goes to stderr). Idempotent; scripts/servers/prepare.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/../.."

TRL_VERSION="1.13.0"
# torch first and alone: the CPU wheel on disk; named again with the rest so that
# resolving them can never swap it for a CUDA build.
TORCH="torch==2.13.0"
PINS="trl==$TRL_VERSION transformers==5.17.0 datasets==5.0.1 accelerate==1.15.0 pyarrow==25.0.1"
CACHE="${TTCQ_SERVER_CACHE:-$HOME/.cache/ttcq-servers}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE" .venv
LOG=.venv/trl-install.log

quiet() {  # run a step, keeping its chatter in $LOG unless it fails
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "prepare_trl.sh: failed: $*  (full log: $LOG)" >&2
    exit 1
  fi
}
key() { { "$PY" --version 2>&1; printf '%s\n' "$@"; } | sha256sum | cut -c1-12; }

dir="$CACHE/trl-$TRL_VERSION-$(key "$TORCH" "$PINS")"
if [ ! -f "$dir/.ready" ]; then
  echo "preparing TRL $TRL_VERSION in $dir (once; about a minute)..." >&2
  : > "$LOG"
  rm -rf "$dir" && "$PY" -m venv "$dir"
  quiet "$dir/bin/python" -m pip install -q --upgrade pip
  quiet "$dir/bin/python" -m pip install -q "$TORCH"
  # shellcheck disable=SC2086
  quiet "$dir/bin/python" -m pip install -q $PINS "$TORCH"
  "$dir/bin/python" - >>"$LOG" 2>&1 <<'CHECK' || { echo "prepare_trl.sh: the TRL venv is not usable (log: $LOG)" >&2; exit 1; }
import torch
from trl.experimental.prm import PRMConfig, PRMTrainer  # noqa: F401

assert torch.__version__.startswith("2.13.0") and not torch.version.cuda, torch.__version__
CHECK
  touch "$dir/.ready"
fi
echo "$dir/bin/python"
