"""Tree-search logic against a scripted engine and a verifier that reads scores from the
step text, so every expansion, score and pruning decision is known in advance."""

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ttcq.worker.engines.base import (
    Completion,
    EngineInfo,
    GenerationRequest,
    TokenLogprobs,
)
from ttcq.worker.search.beam import beam_search
from ttcq.worker.search.config import SearchConfig, make_config
from ttcq.worker.search.dvts import dvts
from ttcq.worker.search.tree import Beam, keep_top, spread, step_state
from ttcq.worker.search.types import Problem, SearchResult, TraceNode
from ttcq.worker.verifiers.base import VerifierOutput

EOS = 0
# (text so far after the prompt, seed, greedy) -> the next step's text; "<eos>" ends it.
Script = Callable[[str, int, bool], str]


class ScriptedEngine:
    """Test double: one character per token; a step's text comes from the script, cut
    at the request's token limit like a real engine would."""

    info = EngineInfo(model="scripted", eos_token_ids=(EOS,))

    def __init__(self, script: Script):
        self.script = script
        self.calls: list[list[GenerationRequest]] = []

    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids if t != EOS)

    def chat_prompt(self, messages: Sequence[dict[str, str]],
                    template_kwargs: Mapping[str, Any] | None = None) -> list[int]:
        return self.tokenize(messages[-1]["content"] + "|")

    def reset(self) -> None:
        pass

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        return [[self._complete(r, (r.params.seed or 0) + j) for j in range(r.n)] for r in requests]

    def _complete(self, request: GenerationRequest, seed: int) -> Completion:
        so_far = self.detokenize(request.prompt_ids).split("|", 1)[1]
        text = self.script(so_far, seed, request.params.temperature == 0)
        eos = text.endswith("<eos>")
        text = text.removesuffix("<eos>")
        tokens = self.tokenize(text) + ([EOS] if eos else [])
        limit = request.params.max_tokens
        cut = len(tokens) > limit
        tokens, text = tokens[:limit], text[:limit]
        return Completion(
            token_ids=tokens,
            text=text,
            finish_reason="length" if cut else "stop",
            matched_stop=None if cut or eos else "\n\n",
            prompt_tokens=len(request.prompt_ids),
            cached_tokens=0,
        )

    def next_token_logprobs(
        self, prompts: Sequence[Sequence[int]], token_ids: Sequence[int]
    ) -> list[TokenLogprobs]:
        raise AssertionError("the tag verifier never asks the engine")


class TagVerifier:
    """Test double: a step scores the number after "q=" in it, 0.5 when there is none."""

    name = "tag"

    def __init__(self) -> None:
        self.paths: list[list[str]] = []

    def score(
        self, question: str, candidates: Sequence[Sequence[str]], *, last_only: bool = False
    ) -> VerifierOutput:
        self.paths.extend(list(c) for c in candidates)
        return VerifierOutput([[_tag(c[-1])] for c in candidates])


def _tag(step: str) -> float:
    found = re.search(r"q=([0-9.]+)", step)
    return float(found.group(1)) if found else 0.5


def _config(strategy: str = "beam_search", **overrides: object) -> SearchConfig:
    values: dict[str, object] = {
        "strategy": strategy, "n": 4, "beam_width": 2, "verifier": "self_judge",
        "max_step_tokens": 40, "max_tokens": 400, "max_depth": 3, "aggregation": "last",
    }
    return make_config(**(values | overrides))


def _beam(score: float, state: str = "open") -> Beam:
    node = TraceNode(id=0, parent_id=None, depth=0, kind="prompt", text="")
    return Beam(node, (), score=score, state=state)  # type: ignore[arg-type]


def _completion(text: str, finish: str = "stop", stop: str | None = "\n\n") -> Completion:
    return Completion([1] * len(text), text, finish, stop, 1, 0)  # type: ignore[arg-type]


# Pure helpers
def test_keep_top_ranks_by_score_and_keeps_order() -> None:
    beams = [_beam(0.2), _beam(0.9), _beam(0.5), _beam(0.7)]
    kept, dropped = keep_top(beams, 2)
    assert [b.score for b in kept] == [0.9, 0.7]
    assert [b.score for b in dropped] == [0.2, 0.5]


def test_keep_top_ranks_truncated_last_and_ties_to_the_earlier() -> None:
    beams = [_beam(0.9, "truncated"), _beam(0.3), _beam(0.3)]
    kept, _ = keep_top(beams, 1)
    assert kept == [beams[1]]


def test_spread_shares_the_budget_evenly() -> None:
    assert spread(4, 2) == [2, 2]
    assert spread(4, 3) == [2, 1, 1]
    assert spread(4, 1) == [4]
    assert spread(4, 0) == []


def test_a_length_cut_off_is_truncated_even_with_a_box() -> None:
    cut = _completion("so \\boxed{5} and", "length", None)
    assert step_state(cut, "so \\boxed{5} and", 1, 100, 3) == "truncated"


def test_a_box_or_end_of_sequence_finishes() -> None:
    assert step_state(_completion("\\boxed{5}\n\n"), "\\boxed{5}\n\n", 1, 100, 3) == "finished"
    assert step_state(_completion("done", stop=None), "done", 1, 100, 3) == "finished"
    assert step_state(_completion("\\boxed{5\n\n"), "\\boxed{5\n\n", 1, 100, 3) == "open"


def test_depth_or_budget_limit_truncates_an_open_step() -> None:
    assert step_state(_completion("x\n\n"), "x\n\n", 3, 100, 3) == "truncated"
    assert step_state(_completion("x\n\n"), "x\n\n", 1, 0, 3) == "truncated"


def _by_seed(steps: dict[int, str], greedy: dict[str, str] | None = None) -> Script:
    """Sampled steps by seed; greedy (lookahead) steps by the last step they follow."""

    def script(so_far: str, seed: int, is_greedy: bool) -> str:
        if is_greedy:
            last = so_far.rstrip("\n").rsplit("\n\n", 1)[-1]
            return (greedy or {})[last]
        return steps[seed]

    return script


def _node(result: SearchResult, text: str) -> TraceNode:
    return next(n for n in result.trace.nodes if n.text.startswith(text))


def _prompts(engine: ScriptedEngine, call: int) -> list[tuple[str, int]]:
    """(the last step each request continues, its n) for one engine call."""
    tail = [engine.detokenize(r.prompt_ids).rstrip("\n").rsplit("\n\n", 1)[-1] for r in
            engine.calls[call]]
    return [(t.split("|")[-1], r.n) for t, r in zip(tail, engine.calls[call], strict=True)]


# Beam search
def test_beam_search_keeps_the_top_n_over_m_and_prunes_the_rest() -> None:
    engine = ScriptedEngine(_by_seed({
        0: "a q=0.9\n\n", 1: "b q=0.1\n\n", 2: "c q=0.5\n\n", 3: "d q=0.7\n\n",
        4: "\\boxed{1} q=0.6\n\n", 5: "\\boxed{2} q=0.4\n\n",
        6: "\\boxed{1} q=0.3<eos>", 7: "\\boxed{3} q=0.8\n\n",
    }))
    result = beam_search(Problem("p"), _config(), engine, TagVerifier())
    assert _prompts(engine, 0) == [("", 4)]
    assert _prompts(engine, 1) == [("a q=0.9", 2), ("d q=0.7", 2)]
    assert len(engine.calls) == 2
    assert _node(result, "b").status == "pruned" and _node(result, "c").status == "pruned"
    assert [c.answer for c in result.candidates] == ["1", "2", "1", "3"]
    assert result.chosen.answer == "3"  # aggregation "last": 0.8 is the best final step
    assert result.curve == {4: result.selected}


def test_beam_search_shares_n_expansions_among_fewer_open_beams() -> None:
    engine = ScriptedEngine(_by_seed({
        0: "a q=0.9\n\n", 1: "\\boxed{1} q=0.2\n\n", 2: "\\boxed{7} q=0.99 " + "x" * 50,
        3: "stop q=0.3<eos>", **{s: f"\\boxed{{{s}}} q=0.1\n\n" for s in range(4, 8)},
    }))
    result = beam_search(Problem("p"), _config(), engine, TagVerifier())
    assert _prompts(engine, 1) == [("a q=0.9", 4)]
    cut = next(c for c in result.candidates if c.finish == "length")
    assert cut.answer == "7" and cut.canonical is None  # extracted, never counted
    assert result.trace.nodes[cut.leaf_id].status == "truncated"
    assert result.chosen.finished and result.chosen.answer == "1"


def test_a_path_at_max_depth_without_an_answer_is_truncated() -> None:
    engine = ScriptedEngine(_by_seed({s: f"step {s}\n\n" for s in range(40)}))
    result = beam_search(Problem("p"), _config(max_depth=2), engine, TagVerifier())
    assert {c.finish for c in result.candidates} == {"length"}
    assert max(n.depth for n in result.trace.nodes) == 2
    assert result.answer is None


# DVTS
def test_dvts_returns_only_the_chosen_path_of_each_subtree() -> None:
    engine = ScriptedEngine(_by_seed({
        0: "s q=0.3\n\n", 1: "\\boxed{9} q=0.2<eos>",  # subtree 0 keeps s; the box is pruned
        2: "\\boxed{5} q=0.8\n\n", 3: "t q=0.4\n\n",  # subtree 1 ends on its best, finished
        4: "\\boxed{6} q=0.7\n\n", 5: "u q=0.9\n\n",
        6: "v q=0.1\n\n", 7: "w q=0.6\n\n",  # depth 3 = max_depth: truncated
    }))
    result = dvts(Problem("p"), _config("dvts"), engine, TagVerifier())
    assert [(c.group, c.finish, c.answer) for c in result.candidates] == [
        (1, "stop", "5"), (0, "length", None)
    ]
    assert [len(call) for call in engine.calls] == [2, 1, 1]
    assert result.trace.nodes[result.candidates[1].leaf_id].text == "w q=0.6\n\n"
    assert _node(result, "\\boxed{9}").status == "pruned"
    assert _node(result, "\\boxed{6}").status == "pruned"
    assert sorted(result.curve) == [2, 4]
    assert result.chosen.answer == "5"


# Lookahead
def test_lookahead_scores_a_step_through_its_greedy_continuation() -> None:
    engine = ScriptedEngine(_by_seed(
        {0: "a q=0.1\n\n", 1: "b q=0.9\n\n", 4: "\\boxed{2} q=0.5<eos>", 5: "e q=0.4<eos>"},
        greedy={"a q=0.1": "la q=0.8 \\boxed{3}\n\n", "b q=0.9": "lb q=0.2\n\n"},
    ))
    verifier = TagVerifier()
    config = _config("lookahead", n=2, lookahead=1)
    result = beam_search(Problem("p"), config, engine, verifier)
    a, b = _node(result, "a"), _node(result, "b")
    assert (a.step_score, b.step_score) == (0.8, 0.2)
    assert ["a q=0.1\n\n", "la q=0.8 \\boxed{3}\n\n"] in verifier.paths
    assert b.status == "pruned"
    ahead = [n for n in result.trace.nodes if n.kind == "lookahead"]
    assert all(n.completion_tokens > 0 for n in ahead)
    extra = [c for c in result.candidates if result.trace.nodes[c.leaf_id].kind == "lookahead"]
    assert [(c.answer, c.finish, c.step_scores) for c in extra] == [("3", "stop", [0.8])]
    assert result.trace.usage().completion_tokens == result.generation.completion_tokens


def test_dvts_lookahead_answers_join_their_subtree() -> None:
    engine = ScriptedEngine(_by_seed(
        {0: "a q=0.1\n\n", 1: "b q=0.9\n\n", 4: "\\boxed{2} q=0.5<eos>", 5: "e q=0.4<eos>"},
        greedy={"a q=0.1": "la \\boxed{4} q=0.8\n\n", "b q=0.9": "lb q=0.2\n\n"},
    ))
    result = dvts(Problem("p"), _config("dvts", n=2, lookahead=1), engine, TagVerifier())
    kinds = [result.trace.nodes[c.leaf_id].kind for c in result.candidates]
    assert [(c.group, c.answer) for c in result.candidates] == [(0, "4"), (0, "2")]
    assert kinds == ["lookahead", "step"]  # one chosen path, plus the paid-for answer
    assert _node(result, "b").status == "pruned" and _node(result, "e").status == "pruned"
