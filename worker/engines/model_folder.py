"""Facts about a Hugging Face model folder that a served engine reports."""

import json
import math
import struct
from pathlib import Path


def count_parameters(folder: str | Path) -> int:
    """Parameters in the folder's safetensors files, read from their headers alone (8 bytes
    of length, then JSON); 0 when there are none (the FLOPs estimate is then 0). A tied
    output head is stored once, so it is counted once, as the llama.cpp engine does."""
    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def context_length(folder: str | Path) -> int | None:
    """The longest sequence the model takes (config.json), or None when not said."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None
