"""Answer probing mid-thought (Dynasor) on a scripted reasoning engine: thoughts probed
every K thinking tokens, stopped once the last answers agree, answered from the probe,
with every probe's tokens counted and a journal that resumes such a search exactly."""

from dataclasses import replace
from typing import Any

import pytest

from lab.recording import RecordingEngine
from tests.test_budget_forcing import FORCED, _exact
from tests.utils.thinker import ScriptedThinker
from ttcq.worker.engines.base import Completion, GenerationRequest
from ttcq.worker.journal import Call, Journal, decode_calls, encode_calls
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.probing import ProbeLog
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.thinking import ANSWER_CUE, FORCED_ANSWER_TOKENS
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.factory import make_verifier

PROBLEM = Problem("What is 6 * 7?", gold="42")


def settling(so_far: str, seed: int) -> str:
    """Thinks for ever; asked for its answer, says its thought's tokens // 20 (0 after 10,
    1 after 20 and 30, 2 after 40 and 50, ...): answers settle only where they repeat."""
    if so_far.endswith(ANSWER_CUE):
        thought = len(so_far) - len(FORCED)
        return f"{thought // 20}}} and so on<eos>"
    return "<think>" * (not so_far) + "a" * 500


def sure(so_far: str, seed: int) -> str:
    """Thinks for ever; answers 42 whenever asked."""
    return "42}<eos>" if so_far.endswith(ANSWER_CUE) else "<think>" * (not so_far) + "a" * 500


def unboxed(so_far: str, seed: int) -> str:
    """Asked for its answer, rambles without closing the box."""
    return "42 and more" if so_far.endswith(ANSWER_CUE) else "<think>" * (not so_far) + "a" * 99


class ConfidentThinker(ScriptedThinker):
    """TEST DOUBLE: the scripted thinker with top-k logprobs (all -0.5) on every token."""

    def _completion(self, request: GenerationRequest, text: str, tail: list[int],
                    finish: str, matched: str | None) -> Completion:
        out = super()._completion(request, text, tail, finish, matched)
        k = request.params.top_logprobs
        return replace(out, top_logprobs=[[-0.5] * k] * out.completion_tokens) if k else out


def _search(script: Any, strategy: str = "majority", journal: Journal | None = None,
            engine: ScriptedThinker | None = None, **values: Any
            ) -> tuple[SearchResult, RecordingEngine, ScriptedThinker]:
    engine = engine or ScriptedThinker(script)
    recorder = RecordingEngine(engine)
    guarded = journal.engine(recorder) if journal else recorder
    config = make_config(strategy=strategy, **{"n": 2, "verifier": "none", **values})
    result = run_search(PROBLEM, config, guarded, make_verifier(config.verifier, guarded))
    return result, recorder, engine


def _probes(result: SearchResult) -> list[tuple[str, str]]:
    return [(n.text, n.status) for n in result.trace.nodes if n.kind == "probe"]


def test_a_thought_stops_once_its_probes_agree_and_answers_from_the_last() -> None:
    result, recorder, engine = _search(sure, probe_every=10, probe_agree=3)
    thought = "<think>" + "a" * 23  # 30 thinking tokens, the tag's 7 included
    assert [c.text for c in result.candidates] == [thought + FORCED + "42}"] * 2
    assert [(c.answer, c.finish) for c in result.candidates] == [("42", "stop")] * 2
    # Thought calls of 10 tokens (the first draws both samples) and probes, in turn.
    assert [len(call) for call in engine.calls] == [1, 2, 2, 2, 2, 2]
    probes = [r for call in engine.calls for r in call if r.params.temperature == 0.0]
    assert len(probes) == 6
    assert {r.params.max_tokens for r in probes} == {FORCED_ANSWER_TOKENS}
    assert all(engine.detokenize(r.prompt_ids).endswith(FORCED) for r in probes)
    assert _probes(result) == [(FORCED + "42}", "pruned")] * 4 + [
        (FORCED + "42}", "selected"), (FORCED + "42}", "finished")]
    leaves = [result.trace.nodes[c.leaf_id] for c in result.candidates]
    assert {n.kind for n in leaves} == {"probe"}
    assert result.thinking_tokens == 2 * 30
    _exact(result, recorder)


def test_answers_that_change_settle_only_where_they_repeat() -> None:
    # Probes after 10, 20, 30 thinking tokens read 0, 1, 1: two in a row agree at 30.
    result, _, _ = _search(settling, probe_every=10, probe_agree=2, n=1)
    assert [t for t, _ in _probes(result)] == [FORCED + f"{k}}} and so on" for k in (0, 1, 1)]
    assert result.candidates[0].answer == "1"
    three, _, _ = _search(settling, probe_every=10, probe_agree=3, n=1, max_tokens=200)
    answers = [t.removeprefix(FORCED).split("}")[0] for t, _ in _probes(three)]
    assert answers[:6] == ["0", "1", "1", "2", "2", "3"]  # never three alike
    assert three.candidates[0].finish == "length" and three.candidates[0].answer is None


def test_a_probe_that_never_closes_its_box_agrees_with_nothing() -> None:
    result, _, _ = _search(unboxed, probe_every=20, n=1, max_tokens=100)
    assert len(_probes(result)) == 4 and result.candidates[0].answer is None
    log = ProbeLog(answers=[None, None, None])
    assert not log.settled(3)


def test_a_budget_forced_thought_is_probed_until_its_budget() -> None:
    result, recorder, _ = _search(settling, probe_every=10, probe_agree=3, n=1,
                                  think_budget=45)
    assert len(_probes(result)) == 4  # at 10, 20, 30 and 40: no three alike
    text = result.candidates[0].text
    assert text == "<think>" + "a" * 38 + FORCED + "2} and so on"  # forced at 45
    assert result.candidates[0].answer == "2"
    _exact(result, recorder)


def test_deepconf_traces_are_probed_and_stop_on_agreement() -> None:
    engine = ConfidentThinker(sure)
    result, recorder, _ = _search(sure, "deepconf", engine=engine, n=4, deepconf_warmup=2,
                                  probe_every=16, probe_agree=2, chunk_tokens=64,
                                  deepconf_window=8, max_tokens=300)
    assert [c.answer for c in result.candidates] == ["42"] * 4
    leaves = [result.trace.nodes[c.leaf_id] for c in result.candidates]
    assert [(n.kind, n.status) for n in leaves][0] == ("probe", "selected")
    assert {(n.kind, n.status) for n in leaves[1:]} == {("probe", "finished")}
    # Each trace's first chunk opened its thought (64 tokens), the next went on to its
    # next probe (16), which agreed with the first.
    assert result.thinking_tokens == 4 * (64 + 16)
    assert all(c.score == pytest.approx(0.5) for c in result.candidates)
    _exact(result, recorder)


def test_a_probed_search_resumes_exactly_from_its_journal() -> None:
    saved: list[Call] = []
    whole = Journal(save=lambda calls, first, _key: saved.extend(calls))
    reference, whole_run, _ = _search(settling, journal=whole, probe_every=10, probe_agree=2)
    journal = Journal(decode_calls(encode_calls(saved[:3])))  # a thought, a probe, a thought
    resumed, recorder, _ = _search(settling, journal=journal, probe_every=10, probe_agree=2)
    assert journal.replayed == 3 and recorder.generated.calls == whole_run.generated.calls - 3
    assert [c.text for c in resumed.candidates] == [c.text for c in reference.candidates]
    assert [(n.kind, n.text, n.status, n.prompt_tokens, n.completion_tokens)
            for n in resumed.trace.nodes] == [
        (n.kind, n.text, n.status, n.prompt_tokens, n.completion_tokens)
        for n in reference.trace.nodes]


def test_a_probe_interval_of_0_or_probing_where_it_does_not_apply_is_refused() -> None:
    with pytest.raises(ConfigError, match="probe_every: Input should be greater than or equal"):
        make_config(strategy="majority", probe_every=0)
    with pytest.raises(ConfigError, match="probe_every: strategy beam_search does not probe"):
        make_config(strategy="beam_search", verifier="checker", probe_every=64)
    with pytest.raises(ConfigError, match="probe_agree"):
        make_config(strategy="majority", probe_every=64, probe_agree=1)


def straddler(so_far: str, seed: int) -> str:
    """A 20-token thought, then `</think>` and an answer of 33 tokens; probed, says 41."""
    if so_far.endswith(ANSWER_CUE):
        return "41}<eos>"
    return ("<think>" + "a" * 13 + "</think> so the answer is \\boxed{42}<eos>")[len(so_far):]


def test_a_close_cut_by_a_probe_ends_the_thought_with_the_answer_after_it() -> None:
    # The first call stops at 24 tokens, inside </think>: no probe there (it would close
    # a half-written tag); the next writes the rest of the tag and 20 tokens of answer (no
    # stop string matches across the cut) and an answer call finishes the box: no close
    # or cue is forced at the budget.
    result, recorder, engine = _search(straddler, n=1, probe_every=24, think_budget=100)
    [candidate] = result.candidates
    assert candidate.text == "<think>" + "a" * 13 + "</think> so the answer is \\boxed{42}"
    assert (candidate.answer, candidate.finish) == ("42", "stop")
    assert not _probes(result) and result.thinking_tokens == 28
    asked = [r.params.max_tokens for call in engine.calls for r in call]
    assert asked[:2] == [24, 24] and len(asked) == 3
    _exact(result, recorder)


def tagless(so_far: str, seed: int) -> str:
    """Never opens a thought: all it writes is answer."""
    return "42}<eos>" if so_far.endswith(ANSWER_CUE) else ("b" * 60 + "\\boxed{7}<eos>")[
        len(so_far):]


def test_a_reply_outside_a_thought_is_never_probed_and_keeps_max_tokens() -> None:
    result, recorder, _ = _search(tagless, probe_every=10, n=1)
    assert not _probes(result)
    assert result.candidates[0].text == "b" * 60 + "\\boxed{7}"
    assert result.thinking_tokens == 0
    _exact(result, recorder)
    # Without a budget, max_tokens holds thought and answer together, probed or not.
    def long_answer(so_far: str, seed: int) -> str:
        return ("<think>" + "a" * 93 + "</think>" + "x" * 200 + "<eos>")[len(so_far):]
    plain, _, _ = _search(long_answer, n=1, max_tokens=150)
    probed, _, _ = _search(long_answer, n=1, max_tokens=150, probe_every=1000)
    assert len(plain.candidates[0].text) == len(probed.candidates[0].text) == 150
