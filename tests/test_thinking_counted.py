"""Thinking tokens are counted for every strategy family the same way (SearchRun.generate):
a scripted thinker writes one solution whose thought spans several steps, and each search's
count equals the thought's share of what the engine generated, worked out independently
from the replies the engine wrote."""

from collections.abc import Sequence
from typing import Any

import pytest

from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.task import TaskSpec
from lab.ground_truth.thought import Thinking
from tests.utils.thinker import ScriptedThinker
from ttcq.worker.engines.base import Completion, GenerationRequest
from ttcq.worker.engines.wrapper import EngineWrapper
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.thinking import thinking_tokens
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import NoVerifier
from ttcq.worker.verifiers.factory import make_verifier

PROBLEM = Problem("What is 1 + 2?", gold="3")
THOUGHT = "<think>ab\n\ncd\n\nef</think>"  # 25 tokens, across three steps
FULL = THOUGHT + "\n\nSo \\boxed{3}"


def _continue(so_far: str, seed: int) -> str:
    """Writes FULL, continuing whatever part of it the prompt already holds."""
    assert FULL.startswith(so_far), so_far
    return FULL[len(so_far):] + "<eos>"


class CountingThinker(ScriptedThinker):
    """Keeps, for every sample it wrote, where in FULL it started and how many of its
    characters it returned: the thought's share follows without any search code. Gives
    top logprobs too, for DeepConf."""

    def __init__(self) -> None:
        super().__init__(_continue)
        self.written: list[tuple[int, int]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        results = super().generate(requests)
        for request, completions in zip(requests, results, strict=True):
            start = len(self.detokenize(request.prompt_ids).split("|A:", 1)[1])
            for completion in completions:
                self.written.append((start, len(completion.text)))
                completion.top_logprobs = [[-0.5]] * completion.completion_tokens
        return results

    def thought_tokens(self) -> int:
        """Characters of THOUGHT among those written (the end-of-sequence token never is)."""
        return sum(max(0, min(start + size, len(THOUGHT)) - start)
                   for start, size in self.written)


def _search(strategy: str, **values: Any) -> tuple[SearchResult, CountingThinker]:
    engine = CountingThinker()
    verifier = values.pop("verifier", "checker")
    config = make_config(strategy=strategy, verifier=verifier, **values)
    return run_search(PROBLEM, config, engine, make_verifier(verifier, engine)), engine


TREE_POLICY = {"probe": 2, "budget": 4, "bins": [
    {"min_agreement": 0.0, "strategy": "beam_search", "n": 4, "config": {"beam_width": 2}}]}
FAMILIES: dict[str, dict[str, Any]] = {
    "majority": {"n": 3, "verifier": "none"},
    "beam_search": {"n": 4, "beam_width": 2},
    "dvts": {"n": 4, "beam_width": 2},
    "lookahead": {"n": 4, "beam_width": 2, "lookahead": 1},
    "rebase": {"n": 4},
    "particle_filtering": {"n": 4},
    "mcts": {"beam_width": 2, "mcts_simulations": 4},
    "compute_optimal": {"n": 4, "policy": TREE_POLICY},
    "self_refine": {"rounds": 2},
    "math_shepherd": {"n": 2, "rollouts": 2, "verifier": "none"},
    "omega": {"n": 2, "rollouts": 2, "verifier": "none"},
    # Chunks of 8 tokens cut "</think>" in two: "ef</thin" and "k>".
    "deepconf": {"n": 4, "verifier": "none", "deepconf_mode": "offline", "chunk_tokens": 8,
                 "deepconf_window": 4},
}


@pytest.mark.parametrize("strategy", sorted(FAMILIES))
def test_a_strategys_thinking_tokens_are_those_inside_thoughts(strategy: str) -> None:
    result, engine = _search(strategy, **FAMILIES[strategy])
    assert result.thinking_tokens == engine.thought_tokens() > 0
    assert result.generation.completion_tokens > result.thinking_tokens


def test_the_tree_arm_of_compute_optimal_is_counted_beside_its_probe() -> None:
    result, engine = _search("compute_optimal", **FAMILIES["compute_optimal"])
    assert any(n.kind == "decision" and "beam_search" in n.text for n in result.trace.nodes)
    probe_thoughts = 2 * len(THOUGHT)  # two whole samples
    assert result.thinking_tokens > probe_thoughts
    assert result.thinking_tokens == engine.thought_tokens()


def test_a_step_after_the_close_is_no_thinking() -> None:
    """Beam search's steps: "<think>ab" (11 tokens with its blank line) and "cd" (4) are
    thought, "ef</think>" is thought through its close (10 of 12), "So \\boxed{3}" none."""
    result, _ = _search("beam_search", n=2, beam_width=2)
    share = {"<think>ab\n\n": 11, "cd\n\n": 4, "ef</think>\n\n": 10, "So \\boxed{3}": 0}
    steps = [n.text for n in result.trace.nodes if n.kind == "step"]
    assert set(steps) == set(share)
    assert result.thinking_tokens == sum(share[text] for text in steps)


def test_a_close_cut_between_two_calls_ends_the_thought_where_it_ends() -> None:
    """DeepConf's chunks may cut `</think>`: "k>so" after "<think>ab</thin" holds 2
    thinking tokens, and a call after the close holds none."""
    engine = ScriptedThinker(_continue)
    chunk = Completion(list(map(ord, "k>so")), "k>so", "length", None, 10, 0)
    assert thinking_tokens(engine, chunk, "<think>", "</think>", False, "<think>ab</thin") == 2
    assert thinking_tokens(engine, chunk, "<think>", "</think>", False, "<think>a</think>") == 0
    assert thinking_tokens(engine, chunk, "<think>", "</think>", True, "ab") == 4


@pytest.mark.parametrize("strategy", ["math_shepherd", "omega"])
def test_a_rollout_cut_inside_the_thought_counts_whole(strategy: str) -> None:
    """At 12 tokens every solution stops inside its thought ("<think>ab\\n\\nc"), and so
    does every rollout from its first step: all of their tokens are thinking."""
    result, engine = _search(strategy, n=2, rollouts=2, verifier="none", max_tokens=12)
    assert any(n.kind == "rollout" for n in result.trace.nodes)
    assert result.thinking_tokens == engine.thought_tokens()
    assert result.thinking_tokens == result.generation.completion_tokens


def test_an_open_tag_longer_than_the_close_is_found_across_a_cut() -> None:
    engine = ScriptedThinker(_continue)
    chunk = Completion(list(map(ord, "ning>ab")), "ning>ab", "length", None, 10, 0)
    assert thinking_tokens(engine, chunk, "<reasoning>", "</r>", False, "<reaso") == 7


class KeptReplies(EngineWrapper):
    """Keeps every call's prompt and completions."""

    def __init__(self, inner: Any):
        super().__init__(inner)
        self.replies: list[tuple[Sequence[int], Completion]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        out = self.inner.generate(requests)
        self.replies += [(r.prompt_ids, c) for r, cs in zip(requests, out, strict=True)
                         for c in cs]
        return out


def test_self_refines_turns_are_chats_of_their_own_though_they_start_alike() -> None:
    """The ground-truth engine's chats all start with the first one's ids (as ChatML's
    do); each of self-refine's turns is a fresh reply, its thought counted from its start."""
    engine = KeptReplies(GroundTruthEngine(thinking=Thinking(mean_attempts=4.0)))
    config = make_config(strategy="self_refine", rounds=1, verifier="none", max_tokens=128,
                         max_step_tokens=128)
    task = TaskSpec("refine", 0.5, 3, "42", (("7", 1.0),))
    result = run_search(Problem(task.problem_text(), "42"), config, engine, NoVerifier())
    assert len(engine.replies) == 3
    each = [thinking_tokens(engine, c, "<think>", "</think>", False) for _, c in engine.replies]
    assert each[0] and each[2]  # the first answer and its rewrite think; the critique not
    assert result.thinking_tokens == sum(each)
