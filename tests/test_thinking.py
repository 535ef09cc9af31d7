"""Reasoning format without forcing: thought and answer told apart, the answer graded from
the answer part alone, thinking tokens counted apart and exactly."""

from typing import Any

from lab.recording import RecordingEngine
from tests.utils.thinker import Script, ScriptedThinker
from ttcq.worker.engines.base import EngineInfo
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.sampling import settled
from ttcq.worker.search.thinking import Reasoned, split_reasoning
from ttcq.worker.search.types import Candidate, Problem, SearchResult
from ttcq.worker.service import cost_record
from ttcq.worker.verifiers.factory import make_verifier

PROBLEM = Problem("What is 1 + 2?", gold="3")
OPEN, CLOSE = "<think>", "</think>"


def _by_seed(replies: dict[int, str]) -> Script:
    return lambda so_far, seed: replies[seed]


def _majority(engine: ScriptedThinker, **values: Any) -> tuple[SearchResult, RecordingEngine]:
    recorder = RecordingEngine(engine)
    config = make_config(strategy="majority", verifier="none", **values)
    return run_search(PROBLEM, config, recorder, make_verifier("none", recorder)), recorder


def test_text_up_to_the_close_is_thought() -> None:
    assert split_reasoning("<think>a</think>b", OPEN, CLOSE) == Reasoned("<think>a</think>", "b")
    opened = split_reasoning("a</think>b", OPEN, CLOSE, opened_by_prompt=True)
    assert opened == Reasoned("a</think>", "b")


def test_a_thought_without_its_close_has_no_answer() -> None:
    cut = "<think>a \\boxed{7}"
    assert split_reasoning(cut, OPEN, CLOSE) == Reasoned(cut, "")
    assert split_reasoning("a \\boxed{7}", OPEN, CLOSE, opened_by_prompt=True).answer == ""


def test_text_without_tags_is_all_answer() -> None:
    assert split_reasoning("plain \\boxed{3}", OPEN, CLOSE) == Reasoned(None, "plain \\boxed{3}")


def test_the_answer_part_is_graded_not_the_thought() -> None:
    replies = {0: "<think>maybe \\boxed{7}</think>So \\boxed{3}<eos>",
               1: "<think>surely \\boxed{7}</think>\\boxed{3}<eos>",
               2: "<think>\\boxed{7} was it<eos>",  # ended inside its thought
               3: "<think>\\boxed{7}" + "x" * 80}  # cut off at max_tokens
    result, _ = _majority(ScriptedThinker(_by_seed(replies)), n=4, max_tokens=50)
    answers = [(c.answer, c.finish) for c in result.candidates]
    assert answers == [("3", "stop"), ("3", "stop"), (None, "stop"), (None, "length")]
    assert result.answer == "3"


def test_a_thought_opened_by_the_prompt_is_told_apart_too() -> None:
    replies = {0: "the box \\boxed{7} is a guess</think>\\boxed{3}<eos>", 1: "\\boxed{7}<eos>"}
    result, _ = _majority(ScriptedThinker(_by_seed(replies), opens_thought=True), n=2)
    assert [c.answer for c in result.candidates] == ["3", None]


def test_thinking_tokens_are_those_through_the_close() -> None:
    replies = {0: "<think>ab</think>\\boxed{3}<eos>", 1: "<think>abc<eos>",
               2: "<think>" + "y" * 50, 3: "\\boxed{3}<eos>"}
    result, recorder = _majority(ScriptedThinker(_by_seed(replies)), n=4, max_tokens=20)
    # closed: "<think>ab</think>" is 17 tokens; ended inside: 10 + the end token; cut: 20
    assert result.thinking_tokens == 17 + 11 + 20 + 0
    cost = cost_record(result, 1.0, EngineInfo(model="scripted"))
    assert cost.thinking_tokens == result.thinking_tokens
    assert (cost.prompt_tokens, cost.completion_tokens) == recorder.tokens[::2]
    assert result.trace.usage().completion_tokens == recorder.generated.completion_tokens


def test_early_stop_counts_answers_from_the_answer_part() -> None:
    config = make_config(strategy="majority", verifier="none", n=4, early_stop=0.75,
                         early_stop_min=2)
    found = [Candidate(i, i, 0, f"<think>\\boxed{{{i}}}</think>The answer is 3.", "stop")
             for i in range(2)]
    answer_part = lambda text: split_reasoning(text, OPEN, CLOSE).answer  # noqa: E731
    assert "agree on 3" in (settled(found, config, answer_part=answer_part) or "")
    assert settled(found, config) is None  # the thoughts' boxes (0, 1) would not agree
