"""GroundTruthEngine: a TEST DOUBLE of the Engine protocol that writes solutions of the
ground-truth task (see lab.ground_truth), instantly and reproducibly.

- Tokens are characters (id = code point); id 0, the NUL character that no text holds,
  ends a sequence (EOS). A chat is `<|role|>` lines ending with an open assistant turn.
- A request continues the solution after the last assistant marker: the steps already
  there say how far it got and whether it is still sound. Steps are separated by a blank
  line; the last boxes the answer and is followed by EOS. Stop strings, max_tokens and
  finish reasons behave like the real engines (a stop string is kept in the text; a token
  limit is a "length" finish).
- Sample j of a request draws from a generator seeded by a hash of the prompt and
  seed + j, so problems and branches are independent and a seed reproduces a sample.
  Temperature 0 is greedy: the likeliest step (sound from a sound prefix iff p >= 0.5) and
  the likeliest answer.
- Prompts that follow an odd number of assistant turns ask for a review (self-refine's
  critique); the reply is a neutral comment, and the rewrite after it is a fresh sample.
- next_token_logprobs answers the self-judge verifier: for a prompt that shows a path of
  ground-truth steps, P(first token) / (P(first) + P(second)) is the judge's score of the
  last step, so `self_judge` on this engine is GroundTruthVerifier.
- With a thinking model (`thinking=Thinking()`, lab.ground_truth.thought) a reply is a
  thought of attempts, closed by `</think>`, then the answer; its length and accuracy
  follow that model, and it continues any prefix (after "Wait", after a forced cue, or
  cut mid-thought, where it goes on as if uncut). At temperature 0 a thought, and a
  probe's answer, is the seed-0 draw of its prompt: fixed, not the likeliest.
- The prefix cache is ideal within a search (since reset): a prompt that is a sequence
  already prompted or produced is cached but for its last token, as SGLang reports.
"""

import hashlib
import math
import random
import re
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

from lab.ground_truth.confidence import Confidence
from lab.ground_truth.task import SOUND, STEP, TaskSpec, sound_path, step_text
from lab.ground_truth.thought import Thinking, reply_after
from lab.ground_truth.verifier import GroundTruthVerifier
from ttcq.worker.engines.base import (
    Completion,
    EngineInfo,
    GenerationRequest,
    SamplingParams,
    TokenLogprobs,
)

EOS = 0
_TURN = re.compile(r"<\|(system|user|assistant)\|>\n")
STEP_SEPARATOR = "\n\n"
REVIEW = "Review: I checked the steps and have nothing to add."
UNLIKELY = -30.0  # logprob of a token the judge would not say


class GroundTruthEngine:
    def __init__(self, judge: GroundTruthVerifier | None = None, n_params: int = 1_000_000,
                 confidence: Confidence | None = None, thinking: Thinking | None = None):
        # n_params is nominal: it only makes the FLOPs estimate non-zero.
        self.info = EngineInfo(model="ground-truth", eos_token_ids=(EOS,), n_params=n_params)
        self.judge = judge or GroundTruthVerifier()
        self.confidence = confidence or Confidence()
        self.thinking = thinking  # None: no thinking format, solutions are steps
        self._seen: set[tuple[int, ...]] = set()

    # Text and tokens
    def tokenize(self, text: str) -> list[int]:
        return list(map(ord, text))

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(map(chr, token_ids)).replace("\x00", "")

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return self.tokenize(text + "<|assistant|>\n")

    def reset(self) -> None:
        self._seen.clear()

    def health_check(self) -> None:
        """Always healthy: nothing to reach."""

    def close(self) -> None:
        """Nothing to release."""

    # Generation
    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        return [[self._sample(r, j) for j in range(r.n)] for r in requests]

    def _sample(self, request: GenerationRequest, j: int) -> Completion:
        prompt, params = request.prompt_ids, request.params
        cached = self._cached(prompt)
        greedy = params.temperature == 0.0
        seed = 0 if greedy else (params.seed or 0) + j
        rng = random.Random(_digest(prompt, seed))
        before = self.detokenize(prompt)
        text = self._continuation(before, rng, greedy, params.max_tokens)
        completion = _finish(self.tokenize(text) + [EOS], text, params, len(prompt), cached)
        self._seen.add(tuple(prompt) + tuple(completion.token_ids))
        if params.top_logprobs:
            reply = _TURN.split(before)[-1]
            levels = self.confidence.stream(reply, text)[: completion.completion_tokens]
            completion.top_logprobs = [[-level] * params.top_logprobs for level in levels]
        return completion

    def _cached(self, prompt: Sequence[int]) -> int:
        key = tuple(prompt)
        hit = key in self._seen
        self._seen.add(key)
        return len(prompt) - 1 if hit else 0

    def _continuation(self, prompt: str, rng: random.Random, greedy: bool, limit: int) -> str:
        turns = _TURN.split(prompt)  # ['', role, content, role, content, ...]
        roles, reply = turns[1::2], turns[-1]
        spec = TaskSpec.find(prompt)
        if spec is None or roles.count("assistant") % 2 == 0:
            return REVIEW  # not our task, or self-refine's critique turn
        if self.thinking is not None:
            return reply_after(spec, self.thinking, reply, rng, limit)
        return _steps_after(spec, reply, rng, greedy)

    # The self-judge verifier's question
    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        return [self._judge(p, token_ids) for p in prompts]

    def _judge(self, prompt: Sequence[int], token_ids: Sequence[int]) -> TokenLogprobs:
        text = self.detokenize(prompt)
        spec = TaskSpec.find(text)
        shown = text.rsplit("<|user|>\n", 1)[-1]
        score = self.judge.path_score(spec.key, sound_path([shown])) if spec else 0.5
        score = min(max(score, 1e-12), 1.0 - 1e-12)
        # The first token asked for is the "yes" of the judge, the second its "no".
        chosen = [math.log(score), math.log(1.0 - score)]
        logprobs = {t: chosen[i] if i < 2 else UNLIKELY for i, t in enumerate(token_ids)}
        return TokenLogprobs(logprobs, len(prompt), self._cached(prompt))


def _digest(prompt: Sequence[int], seed: int) -> int:
    data = array("I", prompt).tobytes() + seed.to_bytes(8, "big")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _steps_after(spec: TaskSpec, reply: str, rng: random.Random, greedy: bool) -> str:
    """The rest of a solution whose text so far is reply."""
    done = [m["label"] == SOUND for m in STEP.finditer(reply)]
    sound = all(done)
    out = []
    for number in range(len(done) + 1, spec.steps + 1):
        sound = sound and (spec.p >= 0.5 if greedy else rng.random() < spec.p)
        last = number == spec.steps
        answer = (spec.answer if sound else _wrong_answer(spec, rng, greedy)) if last else None
        out.append(step_text(number, sound, rng.getrandbits(32), answer))
    return STEP_SEPARATOR.join(out)


def _wrong_answer(spec: TaskSpec, rng: random.Random, greedy: bool) -> str:
    answers = [answer for answer, _ in spec.wrong]
    weights = [weight for _, weight in spec.wrong]
    if greedy:
        return answers[weights.index(max(weights))]
    return rng.choices(answers, weights)[0]


def _finish(
    token_ids: list[int], text: str, params: SamplingParams, prompt_tokens: int, cached: int
) -> Completion:
    """Cut the whole continuation (text, then EOS) where a real engine would stop."""
    ends = [text.find(s) + len(s) for s in params.stop if s in text]
    stop_at = min(ends, default=None)
    cut, finish, matched = len(token_ids), "stop", None
    if stop_at is not None and stop_at <= params.max_tokens:
        cut, matched = stop_at, _matched(text, stop_at, params.stop)
    elif len(token_ids) > params.max_tokens:
        cut, finish = params.max_tokens, "length"
    return Completion(token_ids[:cut], text[:cut], finish,  # type: ignore[arg-type]
                      matched, prompt_tokens, cached)


def _matched(text: str, end: int, stops: Sequence[str]) -> str:
    return next(s for s in stops if text[:end].endswith(s))
