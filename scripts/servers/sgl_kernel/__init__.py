"""A CPU stand-in for SGLang's kernel package, installed only into the test server's venv.

PyPI has CUDA builds of sgl-kernel alone, and SGLang's CPU path imports it at start-up. For
a plain Llama model without speculative decoding, decoding calls one function from it,
written here in plain PyTorch. Every other name SGLang imports resolves to a function that
raises when called, so a path that needs a real kernel fails loudly instead of silently.
torch.ops.sgl_kernel stays unregistered, so SGLang picks its torch-native attention."""

from collections.abc import Callable
from typing import Any

import torch


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """Request i gets the next end_i - start_i cache locations (one running offset over
    all requests) written into req_to_token[req_pool_indices[i], start_i:end_i]."""
    taken = 0
    rows, starts, ends = (t.tolist() for t in (req_pool_indices, start_offset, end_offset))
    for row, start, end in zip(rows, starts, ends, strict=True):
        if end > pool_len:
            raise IndexError(f"request row {row}: end {end} past the pool's {pool_len}")
        width = end - start
        req_to_token[row, start:end] = out_cache_loc[taken : taken + width]
        taken += width


def _missing(name: str) -> Callable[..., Any]:
    def call(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"sgl_kernel.{name} has no CPU implementation in ttcq's stand-in")

    call.__name__ = name
    return call


def __getattr__(name: str) -> Callable[..., Any]:
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing(name)
