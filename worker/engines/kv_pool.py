"""Many sequences in one llama.cpp KV cache, decoded together.

A unified KV buffer holds up to `n_seq` sequences. Copying a prefix from one sequence to
another only tags the existing cells with a second sequence id, so branches that share a
prompt share its KV cells. `held` remembers what each sequence holds after a call, so a
later call that continues a branch (beam search's next step) reuses all of it."""

import ctypes
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ttcq.worker.engines.cpu_share import ThreadGovernor, allowed_cpus

# A shared prefix is evaluated on its own only when that saves at least this many tokens.
STEM_MIN_GAIN = 16


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (llama.cpp writes there, below Python's sys.stderr)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class KVFullError(RuntimeError):
    """The KV buffer has no room left for the batch, even after evicting idle sequences."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Prefill:
    """Where one prompt was placed and what it cost."""

    seq: int
    cached: int
    logits: np.ndarray


class KVPool:
    def __init__(
        self, model: Any, *, n_ctx: int, n_seq: int, n_batch: int, n_threads: int | None
    ):
        """n_threads=None: as many threads as other processes leave cores free (see
        cpu_share.py), re-read before each forward pass; a number fixes the count."""
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.kv_unified = True
        self._governor = None if n_threads else ThreadGovernor(len(allowed_cpus()))
        self.n_threads = n_threads or len(allowed_cpus())
        params.n_threads = params.n_threads_batch = self.n_threads
        # A unified cache longer than the training context draws a warning on stderr; no
        # sequence grows past the engine's own n_ctx, so it does not apply.
        with _quiet_stderr():
            self._ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1, verbose=False)
        self.n_ctx, self.n_seq, self.n_batch = n_ctx, n_seq, n_batch
        self._n_vocab = model.n_vocab()
        self.held: dict[int, list[int]] = {}

    def clear(self) -> None:
        self._ctx.kv_cache_clear()
        self.held.clear()

    def _drop(self, seq: int) -> None:
        self._llama_cpp.llama_memory_seq_rm(self._ctx.memory, seq, 0, -1)
        self.held.pop(seq, None)

    def _copy(self, src: int, dst: int, length: int) -> None:
        self._llama_cpp.llama_memory_seq_cp(self._ctx.memory, src, dst, 0, length)
        self.held[dst] = self.held[src][:length]

    def decode(
        self, items: Sequence[tuple[int, Sequence[int]]], busy: set[int]
    ) -> list[np.ndarray]:
        """Append tokens to sequences, in as few llama_decode calls as the batch size
        allows, and return each item's next-token logits. When the cache is full, the
        sequences not in `busy` are evicted and the chunk tried once more."""
        flat = [(k, seq, tok, j == len(toks) - 1)
                for k, (seq, toks) in enumerate(items) for j, tok in enumerate(toks)]
        logits: list[np.ndarray | None] = [None] * len(items)
        for start in range(0, len(flat), self.n_batch):
            chunk = flat[start : start + self.n_batch]
            if not self._decode_chunk(chunk):
                for seq in [s for s in self.held if s not in busy]:
                    self._drop(seq)
                if not self._decode_chunk(chunk):
                    raise KVFullError(f"KV cache of {self.n_ctx} cells is full")
            for i, (k, _seq, _tok, last) in enumerate(chunk):
                if last:
                    logits[k] = self._logits(i)
        return [x for x in logits if x is not None]

    def _decode_chunk(self, chunk: Sequence[tuple[int, int, int, bool]]) -> bool:
        """One llama_decode; False (and nothing changed) when the cache has no room."""
        b = self._batch.batch
        b.n_tokens = len(chunk)
        for i, (_k, seq, tok, last) in enumerate(chunk):
            b.token[i] = tok
            b.pos[i] = len(self.held.setdefault(seq, []))
            b.seq_id[i][0] = seq
            b.n_seq_id[i] = 1
            b.logits[i] = last
            self.held[seq].append(tok)
        self._fit_threads()
        code = self._llama_cpp.llama_decode(self._ctx.ctx, b)
        if code == 0:
            return True
        for _k, seq, _tok, _last in reversed(chunk):
            self.held[seq].pop()
        if code == 1:
            return False
        raise RuntimeError(f"llama_decode returned {code}")

    def _fit_threads(self) -> None:
        if self._governor is None:
            return
        wanted = self._governor.threads()
        if wanted != self.n_threads:
            self._llama_cpp.llama_set_n_threads(self._ctx.ctx, wanted, wanted)
            self.n_threads = wanted

    def _logits(self, index: int) -> np.ndarray:
        ptr = self._llama_cpp.llama_get_logits_ith(self._ctx.ctx, index)
        values = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float))
        return np.ctypeslib.as_array(values, shape=(self._n_vocab,)).copy()

    def _best_source(self, prompt: Sequence[int]) -> tuple[int | None, int]:
        best, best_len = None, 0
        for seq, tokens in self.held.items():
            n = min(common_prefix(tokens, prompt), len(prompt) - 1)
            if n > best_len:
                best, best_len = seq, n
        return best, best_len

    def _place_stem(self, prompts: Sequence[Sequence[int]]) -> int:
        """Evaluate the prefix all prompts share once, when no sequence holds it yet, so
        that each prompt copies it instead of computing it again. Returns the tokens it
        evaluated, which the caller charges to a prompt: every computed token is a cost."""
        if len(prompts) < 2:
            return 0
        stem = min(len(p) for p in prompts) - 1
        for p in prompts[1:]:
            stem = min(stem, common_prefix(prompts[0], p))
        _, held = self._best_source(prompts[0][: stem + 1])
        if stem - held < STEM_MIN_GAIN:
            return 0
        (placed,) = self.prefill([prompts[0][:stem]])
        return stem - placed.cached

    def prefill(self, prompts: Sequence[Sequence[int]]) -> list[Prefill]:
        """Place each prompt in a sequence of its own, reusing the longest held prefix;
        equal prompts are evaluated once and copied. At least the last token of every
        prompt is evaluated, for its logits."""
        if len(prompts) > self.n_seq // 2:
            raise ValueError(f"at most {self.n_seq // 2} prompts per prefill")
        leaders: dict[tuple[int, ...], int] = {}
        for i, p in enumerate(prompts):
            leaders.setdefault(tuple(p), i)
        stem_tokens = self._place_stem([prompts[i] for i in leaders.values()])
        sources = {i: self._best_source(prompts[i]) for i in leaders.values()}
        reserved = {s for s, _ in sources.values() if s is not None}
        # Empty sequences first: what the others hold may serve a later call.
        idle = (s for s in range(self.n_seq) if s not in reserved)
        free = sorted(idle, key=self.held.__contains__)
        seqs: list[int] = [-1] * len(prompts)
        cached = [0] * len(prompts)
        for i in leaders.values():
            seqs[i] = free.pop(0)
            src, n = sources[i]
            self._drop(seqs[i])
            if src is not None:
                self._copy(src, seqs[i], n)
            cached[i] = n
        busy = {seqs[i] for i in leaders.values()}
        lead_logits = self.decode(
            [(seqs[i], prompts[i][cached[i]:]) for i in leaders.values()], busy | reserved
        )
        logits: list[np.ndarray | None] = [None] * len(prompts)
        for i, lg in zip(leaders.values(), lead_logits, strict=True):
            logits[i] = lg
        followers = [i for i in range(len(prompts)) if logits[i] is None]
        for i in followers:
            seqs[i] = free.pop(0)
            self._drop(seqs[i])
            lead = seqs[leaders[tuple(prompts[i])]]
            cached[i] = len(prompts[i]) - 1
            self._copy(lead, seqs[i], cached[i])
        busy |= {seqs[i] for i in followers}
        tail_logits = self.decode([(seqs[i], prompts[i][-1:]) for i in followers], busy)
        for i, lg in zip(followers, tail_logits, strict=True):
            logits[i] = lg
        # The stem was evaluated for these prompts: the first one carries its cost.
        first = next(iter(leaders.values()))
        cached[first] = max(cached[first] - stem_tokens, 0)
        return [Prefill(seqs[i], cached[i], logits[i]) for i in range(len(prompts))]  # type: ignore[arg-type]
