"""s1 budget forcing on a scripted reasoning engine: a thought closed at its budget and
answered, one extended with Wait below its minimum, every token exactly where the engine
reported it, and a journal that resumes such a search exactly."""

from typing import Any

import pytest

from lab.recording import RecordingEngine
from tests.utils.thinker import Script, ScriptedThinker
from ttcq.worker.engines.base import EngineInfo
from ttcq.worker.journal import Call, Journal, decode_calls, encode_calls
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.thinking import ANSWER_CUE, FORCED_ANSWER_TOKENS
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.service import cost_record
from ttcq.worker.verifiers.factory import make_verifier

PROBLEM = Problem("What is 6 * 7?", gold="42")
FORCED = "</think>" + ANSWER_CUE


def rambler(so_far: str, seed: int) -> str:
    """Thinks for ever; answers 42 once asked."""
    return "42}<eos>" if so_far.endswith(ANSWER_CUE) else "<think>" + "a" * 100


def continuing(full: str) -> Script:
    """Writes `full`, continuing whatever part of it the prompt already holds."""
    def script(so_far: str, seed: int) -> str:
        assert full.startswith(so_far)
        return full[len(so_far):]
    return script


def waiter(so_far: str, seed: int) -> str:
    """Closes its thought early; after a Wait thinks on and answers otherwise."""
    if not so_far:
        return "<think>ab</think>\\boxed{1}<eos>"
    if so_far.endswith("Wait"):
        return " more thinking here</think>\\boxed{42}<eos>"
    return "\\boxed{42}<eos>"


def _search(script: Script, strategy: str = "majority", journal: Journal | None = None,
            **values: Any) -> tuple[SearchResult, RecordingEngine, ScriptedThinker]:
    engine = ScriptedThinker(script)
    recorder = RecordingEngine(engine)
    guarded = journal.engine(recorder) if journal else recorder
    verifier = "checker" if strategy != "majority" else "none"
    config = make_config(strategy=strategy, verifier=verifier, **{"n": 3, **values})
    result = run_search(PROBLEM, config, guarded, make_verifier(verifier, guarded))
    return result, recorder, engine


def _exact(result: SearchResult, recorder: RecordingEngine) -> None:
    """The search's usage, its trace's sums and the stored cost are the engine's."""
    usage = result.trace.usage()
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == recorder.tokens
    generation = result.generation
    assert (generation.prompt_tokens, generation.cached_tokens,
            generation.completion_tokens) == recorder.tokens
    cost = cost_record(result, 1.0, EngineInfo(model="scripted"))
    assert (cost.prompt_tokens, cost.completion_tokens) == recorder.tokens[::2]
    assert cost.thinking_tokens == result.thinking_tokens
    assert cost.engine_calls == recorder.generated.calls


@pytest.mark.parametrize("strategy", ["majority", "best_of_n", "weighted_best_of_n"])
def test_a_thought_at_its_budget_is_closed_and_answered(strategy: str) -> None:
    result, recorder, engine = _search(rambler, strategy, think_budget=40)
    prompt = len(engine.calls[0][0].prompt_ids)
    assert [c.text for c in result.candidates] == ["<think>" + "a" * 33 + FORCED + "42}"] * 3
    assert [c.answer for c in result.candidates] == ["42"] * 3
    assert result.answer == "42"
    thought, answer = engine.calls  # one call of n thoughts, one of their answers
    assert (thought[0].n, thought[0].params.max_tokens, thought[0].params.stop) == (
        3, 40, ("</think>",))
    assert [len(r.prompt_ids) for r in answer] == [prompt + 40 + len(FORCED)] * 3
    assert {r.params.max_tokens for r in answer} == {FORCED_ANSWER_TOKENS}
    assert result.thinking_tokens == 3 * 40
    assert recorder.tokens == (3 * prompt + 3 * (prompt + 40 + len(FORCED)), 0, 3 * 40 + 3 * 4)
    _exact(result, recorder)


def test_the_forced_text_is_a_node_of_its_own_holding_no_tokens() -> None:
    result, _, _ = _search(rambler, think_budget=40)
    forced = [n for n in result.trace.nodes if n.kind == "forced"]
    assert [n.text for n in forced] == [FORCED] * 3
    assert all(n.prompt_tokens == n.completion_tokens == 0 for n in forced)
    answers = [result.trace.nodes[c.leaf_id] for c in result.candidates]
    assert [n.parent_id for n in answers] == [n.id for n in forced]


def test_a_thought_that_closes_in_time_is_answered_without_forcing() -> None:
    full = "<think>short</think>\\boxed{42}<eos>"
    result, recorder, engine = _search(continuing(full), think_budget=50, max_tokens=30)
    assert [c.text for c in result.candidates] == [full.removesuffix("<eos>")] * 3
    assert not [n for n in result.trace.nodes if n.kind == "forced"]
    assert {r.params.max_tokens for r in engine.calls[1]} == {30}
    assert result.thinking_tokens == 3 * len("<think>short</think>")
    _exact(result, recorder)


def test_a_thought_below_its_minimum_goes_on_after_wait() -> None:
    result, recorder, engine = _search(waiter, think_min=15)
    text = "<think>abWait more thinking here</think>\\boxed{42}"
    assert [(c.text, c.answer) for c in result.candidates] == [(text, "42")] * 3
    assert len(engine.calls) == 3  # the thought, its continuation after Wait, the answer
    # The replaced close was generated: its 8 tokens count as thinking.
    assert result.thinking_tokens == 3 * (len("<think>ab</think>") + len(
        " more thinking here</think>"))
    forced = [n.text for n in result.trace.nodes if n.kind == "forced"]
    assert forced == ["Wait"] * 3
    _exact(result, recorder)


def test_without_a_budget_a_thought_cut_off_has_no_answer() -> None:
    result, recorder, _ = _search(rambler, think_min=5, max_tokens=30)
    assert [(c.answer, c.finish) for c in result.candidates] == [(None, "length")] * 3
    assert result.thinking_tokens == 3 * 30
    _exact(result, recorder)


def test_a_budget_within_the_forced_continuation_is_refused() -> None:
    with pytest.raises(ValueError, match="think_budget: 27 tokens is not more than the 31"):
        _search(rambler, think_budget=len(FORCED) - 4)
    with pytest.raises(ValueError, match="think_min: 50 must be below think_budget"):
        _search(rambler, think_budget=40, think_min=50)


def test_a_forced_search_resumes_exactly_from_its_journal() -> None:
    saved: list[Call] = []
    whole = Journal(save=lambda calls, first, _key: saved.extend(calls))
    reference, _, _ = _search(waiter, journal=whole, think_min=15)
    recorded = decode_calls(encode_calls(saved))  # the first two calls, as stored
    journal = Journal(recorded)
    resumed, recorder, _ = _search(waiter, journal=journal, think_min=15)
    assert journal.replayed == 2 and recorder.generated.calls == 1
    assert [c.text for c in resumed.candidates] == [c.text for c in reference.candidates]
    assert resumed.thinking_tokens == reference.thinking_tokens
    assert [(n.kind, n.text, n.prompt_tokens, n.completion_tokens)
            for n in resumed.trace.nodes] == [
        (n.kind, n.text, n.prompt_tokens, n.completion_tokens) for n in reference.trace.nodes]


def seeded_rambler(so_far: str, seed: int) -> str:
    """Thinks for ever, differently per seed; answers with its seed's parity once asked."""
    if so_far.endswith(ANSWER_CUE):
        return f"{seed % 2}}}<eos>"
    return "<think>" + str(seed % 7) * 100


def test_forced_samples_drawn_in_rounds_are_those_of_one_call() -> None:
    whole, _, _ = _search(seeded_rambler, think_budget=40, n=4)
    rounds, _, engine = _search(seeded_rambler, think_budget=40, n=4, early_stop=1.0,
                                early_stop_round=2, early_stop_min=2)
    assert len(engine.calls) == 4  # two rounds of (thoughts, answers): no early stop
    assert [c.text for c in rounds.candidates] == [c.text for c in whole.candidates]
    assert rounds.thinking_tokens == whole.thinking_tokens == 4 * 40


def test_forcing_where_it_does_not_apply_or_a_minimum_past_the_budget_is_refused() -> None:
    with pytest.raises(ConfigError, match="think_budget: strategy beam_search"):
        make_config(strategy="beam_search", verifier="checker", think_budget=256)
    with pytest.raises(ConfigError, match=r"think_min: 300 must be below think_budget \(256\)"):
        make_config(strategy="majority", think_budget=256, think_min=300)
    # compute_optimal's policy bins are checked as the configs they run.
    with pytest.raises(ConfigError, match="policy.bins.3: think_budget: strategy beam_search"):
        make_config(strategy="compute_optimal", verifier="checker", think_budget=256)


def uneven_thinker(so_far: str, seed: int) -> str:
    """Closes its first thought early for sample 1 only (a Wait follows), late for the
    others; answers with its seed once asked."""
    if so_far.endswith(ANSWER_CUE):
        return f"{seed % 97}}}<eos>"
    if so_far.endswith("</think>"):
        return f"\\boxed{{{seed % 97}}}<eos>"
    short = seed == 1 and "Wait" not in so_far
    return "<think>" + "x" * (5 if short else 60) + "</think>"


def test_forced_samples_with_a_minimum_are_the_same_however_they_are_batched() -> None:
    """A sample's seeds follow its own calls: one that waits more takes no other's seed."""
    values = {"think_budget": 40, "think_min": 20, "n": 4}
    whole, _, _ = _search(uneven_thinker, **values)
    rounds, _, _ = _search(uneven_thinker, early_stop=1.0, early_stop_round=2,
                           early_stop_min=2, **values)
    assert [c.text for c in rounds.candidates] == [c.text for c in whole.candidates]
    assert any("Wait" in c.text for c in whole.candidates)
