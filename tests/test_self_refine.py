"""self_refine on the real model: rounds, critique nodes, tree invariants, exact cost."""

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from lab.recording import RecordingEngine
from ttcq.worker.engines.base import (
    Completion,
    Engine,
    EngineInfo,
    GenerationRequest,
    TokenLogprobs,
)
from ttcq.worker.search.config import make_config
from ttcq.worker.search.refine import CRITIQUE_ASK, REWRITE_ASK
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.scoring import select
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.factory import make_verifier

PROBLEM = Problem("Tom has 3 boxes of 4 apples. He eats 2 apples. How many are left?", gold="10")
ROUNDS = 2


def refine(engine: Engine, verifier: str) -> tuple[SearchResult, RecordingEngine]:
    recorder = RecordingEngine(engine)
    config = make_config(
        strategy="self_refine", rounds=ROUNDS, max_tokens=16, max_step_tokens=12,
        verifier=verifier, seed=5,
    )
    return run_search(PROBLEM, config, recorder, make_verifier(verifier, recorder)), recorder


@pytest.fixture(scope="module")
def checked(engine: Engine) -> tuple[SearchResult, RecordingEngine]:
    return refine(engine, "checker")


@pytest.fixture(scope="module")
def voted(engine: Engine) -> tuple[SearchResult, RecordingEngine]:
    return refine(engine, "none")


def test_one_candidate_per_attempt(checked: tuple[SearchResult, RecordingEngine]) -> None:
    result, _ = checked
    assert result.strategy == "self_refine"
    assert [c.group for c in result.candidates] == list(range(ROUNDS + 1))
    assert all(c.finish in ("stop", "length") for c in result.candidates)
    assert sorted(result.curve) == [1, 2, ROUNDS + 1]


def test_each_round_critiques_then_revises(checked: tuple[SearchResult, RecordingEngine]) -> None:
    result, _ = checked
    nodes = result.trace.nodes
    critiques = [n for n in nodes if n.kind == "critique"]
    revisions = [n for n in nodes if n.kind == "revision"]
    assert len(critiques) == len(revisions) == ROUNDS
    for critique, revision in zip(critiques, revisions, strict=True):
        assert critique.completion_tokens > 0 and critique.prompt_tokens > 0
        assert revision.parent_id == critique.id
    leaves = {c.leaf_id for c in result.candidates}
    assert all(nodes[c.parent_id].id in leaves for c in critiques if c.parent_id is not None)


def test_tree_invariants(checked: tuple[SearchResult, RecordingEngine]) -> None:
    nodes = checked[0].trace.nodes
    assert nodes[0].kind == "prompt" and nodes[0].parent_id is None
    for node in nodes[1:]:
        assert node.parent_id is not None and node.parent_id < node.id
        assert node.depth == nodes[node.parent_id].depth + 1


@pytest.mark.parametrize("run", ["checked", "voted"])
def test_cost_is_exact(run: str, request: pytest.FixtureRequest) -> None:
    result, recorder = request.getfixturevalue(run)
    engine_sums = (recorder.generated.prompt_tokens, recorder.generated.cached_tokens,
                   recorder.generated.completion_tokens)
    gen, trace = result.generation, result.trace.usage()
    assert (gen.prompt_tokens, gen.cached_tokens, gen.completion_tokens) == engine_sums
    assert (trace.prompt_tokens, trace.cached_tokens, trace.completion_tokens) == engine_sums
    assert gen.calls == recorder.generated.calls == 1 + 2 * ROUNDS


def test_the_verifier_scores_only_each_attempts_own_steps(
    checked: tuple[SearchResult, RecordingEngine],
) -> None:
    result, _ = checked
    nodes = result.trace.nodes
    for c in result.candidates:
        path = result.trace.path(nodes[c.leaf_id])
        critiques = [i for i, n in enumerate(path) if n.kind == "critique"]
        own = path[critiques[-1] + 1 :] if critiques else path  # below the last critique
        assert [n.step_score for n in own] == c.step_scores and c.score is not None
    assert all(n.step_score is None for n in nodes if n.kind == "critique")


def test_without_a_verifier_the_attempts_vote(voted: tuple[SearchResult, RecordingEngine]) -> None:
    result, _ = voted
    assert all(c.step_scores == [] and c.score is None for c in result.candidates)
    assert result.verification.calls == 0
    assert result.selected == select(result.candidates, "majority")


class ScriptedEngine:
    """Characters as tokens; replies come from a script, in order; chats are recorded."""

    def __init__(self, replies: list[str]):
        self.info = EngineInfo(model="scripted", eos_token_ids=(0,))
        self.replies = list(replies)
        self.chats: list[list[tuple[str, str]]] = []

    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids)

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        self.chats.append([(m["role"], m["content"]) for m in messages])
        return self.tokenize("|".join(m["content"] for m in messages))

    def reset(self) -> None:
        pass

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        text = self.replies.pop(0)
        tokens = self.tokenize(text) + [0]  # then end of sequence
        return [[Completion(tokens, text, "stop", None, len(r.prompt_ids), 0)] for r in requests]

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        raise AssertionError("self_refine with the checker needs no logprobs")


SCRIPT = [
    "2 + 2 = 5\n\n\\boxed{5}",  # attempt 0: wrong arithmetic
    "The sum is wrong.",  # critique 1
    "2 + 2 = 4\n\n\\boxed{4}",  # revision 1
    "Looks right.",  # critique 2
    "2 + 2 = 4\n\nSo \\boxed{4}",  # revision 2
]


def scripted(verifier: str) -> tuple[SearchResult, ScriptedEngine]:
    engine = ScriptedEngine(SCRIPT)
    config = make_config(strategy="self_refine", rounds=2, verifier=verifier)
    result = run_search(Problem("What is 2 + 2?"), config, engine, make_verifier(verifier, engine))
    return result, engine


def test_the_rewrite_sees_the_attempt_and_its_critique() -> None:
    _, engine = scripted("checker")
    first_critique, first_rewrite = engine.chats[1], engine.chats[2]
    assert [role for role, _ in first_critique] == ["system", "user", "assistant", "user"]
    assert first_critique[2][1] == SCRIPT[0] and first_critique[3][1] == CRITIQUE_ASK
    assert [content for _, content in first_rewrite[2:]] == [
        SCRIPT[0], CRITIQUE_ASK, SCRIPT[1], REWRITE_ASK
    ]
    assert engine.chats[4][2][1] == SCRIPT[2]  # round 2 critiques revision 1, not attempt 0


def test_the_checker_picks_a_correct_revision() -> None:
    result, _ = scripted("checker")
    assert [c.answer for c in result.candidates] == ["5", "4", "4"]
    assert result.candidates[0].step_scores[0] == 0.0
    assert result.answer == "4" and result.selected in (1, 2)


def test_without_a_verifier_the_revisions_outvote_the_first_attempt() -> None:
    result, _ = scripted("none")
    assert result.answer == "4"
    assert result.curve == {1: 0, 2: 0, 3: 1}  # after one round "5" and "4" tie: first seen
