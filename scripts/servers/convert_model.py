"""Turn the SmolLM2-135M GGUF into the Hugging Face folders the test servers load.

Run inside the SGLang venv (torch, transformers, gguf):
    python convert_model.py GGUF POLICY_DIR REWARD_DIR

POLICY_DIR: the causal LM, dequantized to bf16 (a GGUF-quantized model cannot be saved).
REWARD_DIR: the same weights as a sequence classifier with one output and a seeded random
score head: a stand-in reward model whose scores mean nothing but whose protocol is real
(a causal LM converted on the fly by a server has an uninitialised head: NaN)."""

import sys
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    LlamaForSequenceClassification,
)

REWARD_HEAD_SEED = 1234


def convert(gguf: Path, policy_dir: Path, reward_dir: Path) -> None:
    quantization = GgufConfig(gguf_file=str(gguf), dequantize=True)
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, quantization_config=quantization, dtype=torch.bfloat16
    )
    model.save_pretrained(policy_dir)
    tokenizer.save_pretrained(policy_dir)

    torch.manual_seed(REWARD_HEAD_SEED)
    reward = LlamaForSequenceClassification.from_pretrained(
        policy_dir, num_labels=1, dtype=torch.bfloat16
    )
    reward.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    reward.save_pretrained(reward_dir)
    tokenizer.save_pretrained(reward_dir)


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
