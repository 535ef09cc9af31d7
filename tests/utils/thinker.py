"""A scripted reasoning engine for thinking-format and budget-forcing tests, and a wrapper
that makes a real model's assistant turn open with a thought."""

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ttcq.worker.engines.base import (
    Completion,
    EngineInfo,
    GenerationRequest,
    TokenLogprobs,
)
from ttcq.worker.engines.wrapper import EngineWrapper

EOS = 0
ASSISTANT = "|A:"
# (the assistant's text so far, seed) -> the rest of its reply; "<eos>" at the end ends it.
Script = Callable[[str, int], str]
THINK_SYSTEM = ("Think step by step inside <think> </think>, then write the final answer as "
                "\\boxed{answer}.")


class ScriptedThinker:
    """TEST DOUBLE: one character per token. A reply comes from the script, continuing the
    assistant's text so far (forced text included), then is cut like a real engine cuts:
    at the first stop string (kept in the text, as llama.cpp and SGLang keep it) or at
    max_tokens, whichever comes first; an end of sequence is a token of its own."""

    info = EngineInfo(model="scripted-thinker", eos_token_ids=(EOS,))

    def __init__(self, script: Script, opens_thought: bool = False):
        self.script = script
        self.opening = "<think>\n" if opens_thought else ""
        self.calls: list[list[GenerationRequest]] = []

    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids if t != EOS)

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        return self.tokenize(f"U:{messages[-1]['content']}{ASSISTANT}{self.opening}")

    def reset(self) -> None:
        pass

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        return [[self._complete(r, (r.params.seed or 0) + j) for j in range(r.n)]
                for r in requests]

    def _complete(self, request: GenerationRequest, seed: int) -> Completion:
        so_far = self.detokenize(request.prompt_ids).split(ASSISTANT, 1)[1]
        text = self.script(so_far, seed)
        eos = text.endswith("<eos>")
        text = text.removesuffix("<eos>")
        limit = request.params.max_tokens
        ends = [(text.find(s) + len(s), s) for s in request.params.stop if s in text]
        if ends and min(ends)[0] <= limit:
            end, matched = min(ends)
            return self._completion(request, text[:end], [], "stop", matched)
        tokens = self.tokenize(text) + ([EOS] if eos else [])
        if len(tokens) > limit:
            return self._completion(request, text[:limit], [], "length", None)
        return self._completion(request, text, [EOS] if eos else [], "stop", None)

    def _completion(self, request: GenerationRequest, text: str, tail: list[int],
                    finish: str, matched: str | None) -> Completion:
        return Completion(token_ids=self.tokenize(text) + tail, text=text,
                          finish_reason=finish,  # type: ignore[arg-type]
                          matched_stop=matched, prompt_tokens=len(request.prompt_ids),
                          cached_tokens=0)

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        raise AssertionError("no verifier here asks the engine")

    def health_check(self) -> None:
        pass

    def close(self) -> None:
        pass


class ThoughtOpening(EngineWrapper):
    """TEST DOUBLE around a real engine: its chat prompt opens the assistant's turn with a
    thought, as reasoning models' chat templates do (SmolLM2's does not)."""

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        return self.inner.chat_prompt(messages, template_kwargs) + self.inner.tokenize(
            "<think>\n")


# Qwen3's switch on a template that opens the assistant's turn: a thought opened by default,
# an empty one closed (Qwen3's own "<think>\n\n</think>\n\n") with enable_thinking false.
THINKING_SWITCH = ("{% if enable_thinking is defined and enable_thinking is false %}"
                   "{{ '<think>\\n\\n</think>\\n\\n' }}{% else %}{{ '<think>\\n' }}{% endif %}")


def with_thinking_switch(model_dir: str | Path, dest: Path) -> Path:
    """TEST DOUBLE of a reasoning model's folder: model_dir's tokenizer files (no weights)
    with its chat template's assistant turn opened by THINKING_SWITCH."""
    source = Path(model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json",
                 "generation_config.json"):
        if (source / name).is_file():
            shutil.copy(source / name, dest / name)
    template = (source / "chat_template.jinja").read_text(encoding="utf-8")
    opening = "{{ '<|im_start|>assistant\n' }}"
    assert opening in template, "the model's template no longer opens the turn this way"
    (dest / "chat_template.jinja").write_text(
        template.replace(opening, opening + THINKING_SWITCH), encoding="utf-8")
    return dest
