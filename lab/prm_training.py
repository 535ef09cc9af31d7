"""Train a process reward model on `ttcq export --format trl` with TRL's PRMTrainer, on CPU.

Run with the TRL venv's python (scripts/servers/prepare_trl.sh prints it), not the
project's: this file imports neither ttcq nor anything the project venv has.

    python lab/prm_training.py DATA_FILE BASE_MODEL_DIR OUT_DIR --steps N

DATA_FILE: JSONL or Parquet, one row per labelled solution with "prompt", "completions"
(step texts) and "labels" (one bool per step); other columns are dropped. OUT_DIR gets a
token-classification model (2 labels: 1 = good step) and its tokenizer; stdout's last line
is a JSON report with the loss of each step. The input the model learns, which
worker/verifiers/classifier_prm.py rebuilds token for token to score a candidate:
    [bos] + tokens(prompt) + for each step: tokens(step) + tokens(STEP_SEPARATOR)
each step judged at the last token of its separator."""

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never ask a hub
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # PRMTrainer lives in trl.experimental

import torch  # noqa: E402
from datasets import Dataset, load_dataset  # noqa: E402
from transformers import AutoModelForTokenClassification, AutoTokenizer  # noqa: E402
from trl.experimental.prm import PRMConfig, PRMTrainer  # noqa: E402

STEP_SEPARATOR = "\n"  # TRL's default; the served verifier must join steps with the same
TRAINED_COLUMNS = ["prompt", "completions", "labels"]
LABELS = {0: "bad", 1: "good"}


def load_rows(path: Path) -> Dataset:
    """The export as a datasets.Dataset: stepwise supervision, whitespace-trimmed steps."""
    kind = "parquet" if path.suffix == ".parquet" else "json"
    rows = load_dataset(kind, data_files=str(path), split="train")
    # The export's extras (soft_labels, job_id, ...) are not TRL's. PRMTrainer 1.13 trains
    # with them (its tokenizing map drops every column); they go here so that the strip
    # below does not carry them along.
    rows = rows.select_columns(TRAINED_COLUMNS)
    rows = rows.filter(lambda row: len(row["completions"]) > 0)
    # Search steps end in "\n\n" and the like; the verifier strips them too, so that
    # training and serving see the same tokens whatever the exporter kept.
    return rows.map(lambda row: {"prompt": row["prompt"].strip(),
                                 "completions": [s.strip() for s in row["completions"]]})


def train(data: Path, base_model: Path, out_dir: Path, scratch: str, *, steps: int,
          batch_size: int, max_length: int, learning_rate: float, seed: int) -> list[float]:
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:  # the collator pads; a padding id is never labelled
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForTokenClassification.from_pretrained(
        base_model, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
        dtype=torch.float32,  # bf16 weights; CPU training steps in float32
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    config = PRMConfig(
        output_dir=scratch, max_steps=steps,  # nothing is saved there (save_strategy "no")
        per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        max_length=max_length, step_separator=STEP_SEPARATOR, seed=seed,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
        bf16=False, gradient_checkpointing=False,  # small model: memory is not the limit
        dataloader_num_workers=0,
    )
    trainer = PRMTrainer(model=model, args=config, processing_class=tokenizer,
                         train_dataset=load_rows(data))
    trainer.train()
    # bf16 like the other served models: half the disk, and what vLLM-CPU runs.
    trainer.model.to(torch.bfloat16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return [float(log["loss"]) for log in trainer.state.log_history if "loss" in log]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("data", type=Path, help="the export: .jsonl or .parquet")
    parser.add_argument("base_model", type=Path, help="a Hugging Face model folder")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        losses = train(args.data, args.base_model, args.out_dir, scratch, steps=args.steps,
                       batch_size=args.batch_size, max_length=args.max_length,
                       learning_rate=args.learning_rate, seed=args.seed)
    report: dict[str, Any] = {"losses": losses, "steps": args.steps,
                              "step_separator": STEP_SEPARATOR, "out_dir": str(args.out_dir)}
    sys.stdout.write(json.dumps(report) + "\n")
    return 0 if losses and all(math.isfinite(x) for x in losses) else 1


if __name__ == "__main__":
    sys.exit(main())
