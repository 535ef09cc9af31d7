"""Answer probing (Dynasor) on the ground-truth task's thought model: the real search
(majority with probe_every through run_search) against an independent numpy simulation
(lab.ground_truth.simulate_probing) within 3.5 standard deviations, in accuracy and in
thinking, probe and answer tokens, with and without a budget; each check tells a reference
one step off (K doubled, A one more or less); so does DeepConf's with probing; the model's
thought written in pieces is well formed and a probe's wrong answer is drawn afresh per
prefix."""

import re
from statistics import mean

import numpy as np
import pytest

from lab.ground_truth import simulate_forcing as forcing
from lab.ground_truth.engine import GroundTruthEngine
from lab.ground_truth.simulate_probing import Probing, Run, deepconf, majority
from lab.ground_truth.task import Level, TaskSpec, make_dataset, specs_of
from lab.ground_truth.thought import THINK_CLOSE, Thinking, attempt_text
from tests.utils.agreement import assert_mean_agrees
from ttcq.worker.engines.base import GenerationRequest, SamplingParams
from ttcq.worker.search.config import make_config
from ttcq.worker.search.registry import run_search
from ttcq.worker.search.thinking import ANSWER_CUE
from ttcq.worker.search.types import Problem, SearchResult
from ttcq.worker.verifiers.base import NoVerifier

MODEL = Thinking(mean_attempts=24.0)
PROBLEMS, SIMULATED = 200, 3000
FIELDS = ("correct", "thinking", "probing", "answering")
# K a multiple of the 28-token attempt: a probe never falls inside the 8-token close.
SETTINGS = {"K=56 A=2": (Probing(56, 2), 1), "K=112 A=3": (Probing(112, 3), 1),
            "K=56 A=2 T=448 n=4": (Probing(56, 2, budget=448), 4)}


def _search(problem: Problem, probing: Probing, n: int, engine: GroundTruthEngine,
            strategy: str = "majority", **values: object) -> SearchResult:
    config = make_config(strategy=strategy, verifier="none", n=n, max_tokens=probing.max_tokens,
                         think_budget=probing.budget, probe_every=probing.every,
                         probe_agree=probing.agree, **values)
    return run_search(problem, config, engine, NoVerifier())


def _searched(probing: Probing, n: int, strategy: str = "majority", **values: object
              ) -> list[Run]:
    engine = GroundTruthEngine(thinking=MODEL)
    out = []
    for row in make_dataset(PROBLEMS, seed=21):
        result = _search(Problem(row["problem"], row["answer"]), probing, n, engine,
                         strategy, **values)
        assert not any(node.kind == "stop" for node in result.trace.nodes)  # see deepconf
        probes = sum(node.completion_tokens for node in result.trace.nodes
                     if node.kind == "probe")
        thinking = result.thinking_tokens
        out.append(Run(result.answer == row["answer"], thinking, probes,
                       result.generation.completion_tokens - thinking - probes))
    return out


def _simulated(probing: Probing, n: int) -> list[Run]:
    rng = np.random.default_rng(5)
    return [majority(spec, MODEL, probing, n, rng)
            for spec in specs_of(make_dataset(SIMULATED, seed=22))]


def _agree(measured: list[Run], reference: list[Run]) -> None:
    """Every field's mean within 3.5 SD of the simulation's."""
    for name in FIELDS:
        assert_mean_agrees([getattr(r, name) for r in measured],
                           [getattr(r, name) for r in reference], name)


@pytest.fixture(scope="module")
def searched() -> dict[str, list[Run]]:
    return {name: _searched(*setting) for name, setting in SETTINGS.items()}


@pytest.mark.parametrize("name", SETTINGS)
def test_probed_majority_matches_the_simulation(searched: dict[str, list[Run]],
                                                name: str) -> None:
    _agree(searched[name], _simulated(*SETTINGS[name]))


@pytest.mark.parametrize("name", SETTINGS)
def test_the_check_tells_a_reference_one_step_off(searched: dict[str, list[Run]],
                                                  name: str) -> None:
    """Twice the interval, or one agreeing answer more or less (A >= 2), fails the check:
    the agreement above is no accident of wide error bars."""
    probing, n = SETTINGS[name]
    off = [Probing(probing.every * 2, probing.agree, probing.budget),
           Probing(probing.every, probing.agree + 1, probing.budget)]
    if probing.agree > 2:
        off.append(Probing(probing.every, probing.agree - 1, probing.budget))
    for reference in off:
        with pytest.raises(AssertionError):
            _agree(searched[name], _simulated(reference, n))


def test_probing_saves_thinking_and_agreement_on_a_wrong_answer_costs_accuracy(
        searched: dict[str, list[Run]]) -> None:
    """Simulated (3,000 problems): K = 56, A = 2 thinks 145 tokens a sample against 685
    unprobed and solves 0.67 against 0.83: two wrong probes agree 38% of the time here."""
    plain = _simulated(Probing(None), 1)
    probed = searched["K=56 A=2"]
    assert mean(r.thinking for r in probed) < 0.3 * mean(r.thinking for r in plain)
    assert mean(r.correct for r in probed) < mean(r.correct for r in plain) - 0.1


def test_the_simulation_without_probes_is_budget_forcings() -> None:
    """The two simulations, written apart, agree where probing is off: at T = 256 and
    unforced, in accuracy and in thinking and answer tokens."""
    rng = np.random.default_rng(9)
    specs = specs_of(make_dataset(SIMULATED, seed=22))
    for budget in (256, None):
        forced = [forcing.majority(spec, MODEL, forcing.Forcing(budget), 1, rng)
                  for spec in specs]
        probed = [majority(spec, MODEL, Probing(None, budget=budget), 1, rng)
                  for spec in specs]
        _agree([Run(r.correct, r.thinking, 0, r.answering) for r in forced], probed)


def _probe_answer(engine: GroundTruthEngine, spec: TaskSpec, thought: str) -> str:
    prompt = engine.chat_prompt([{"role": "user", "content": spec.problem_text()}])
    cue = engine.tokenize(thought + THINK_CLOSE + ANSWER_CUE)
    params = SamplingParams(max_tokens=16, temperature=0.0)
    [[out]] = engine.generate([GenerationRequest(tuple(prompt + cue), params)])
    return out.text.split("}")[0]


def test_an_unsolved_thoughts_probes_draw_their_wrong_answers_afresh() -> None:
    """Probed after 1, 2, ... unsolved attempts, the thought answers from all the task's
    wrong answers; the same prefix always answers the same."""
    spec = TaskSpec("never", 0.0, 4, "7", (("11", 0.5), ("12", 0.3), ("13", 0.2)))
    engine = GroundTruthEngine(thinking=MODEL)
    prefixes = ["<think>\n" + "".join(attempt_text(False, i) for i in range(k))
                for k in range(1, 41)]
    answers = [_probe_answer(engine, spec, prefix) for prefix in prefixes]
    assert set(answers) == {"11", "12", "13"}
    assert answers == [_probe_answer(engine, spec, prefix) for prefix in prefixes]
    solved = prefixes[3] + attempt_text(True, 99)
    assert _probe_answer(engine, spec, solved) == "7"


@pytest.mark.parametrize("piece", [5, 13, 56, 100])
def test_a_thought_written_in_pieces_is_well_formed(piece: int) -> None:
    """Cut anywhere (inside a tag or an attempt line), a thought goes on where it was cut:
    whole attempt lines between its tags, however many calls wrote it."""
    spec = specs_of(make_dataset(3, seed=1))[2]
    engine = GroundTruthEngine(thinking=MODEL)
    prompt = engine.chat_prompt([{"role": "user", "content": spec.problem_text()}])
    reply = ""
    for seed in range(10_000):
        if THINK_CLOSE in reply:
            break
        request = GenerationRequest(tuple(prompt + engine.tokenize(reply)),
                                    SamplingParams(max_tokens=piece, seed=seed))
        reply += engine.generate([request])[0][0].text
    lines = reply[:reply.index(THINK_CLOSE)].split("\n")
    assert lines[0] == "<think>" and lines[-1] == ""
    assert all(re.fullmatch(r"Try: this (misses|solves) \[[0-9a-f]{8}\]", line)
               for line in lines[1:-1])


DEEPCONF = {"deepconf_warmup": 4, "chunk_tokens": 128, "deepconf_window": 64}


def _simulated_deepconf(probing: Probing, n: int) -> list[Run]:
    """DeepConf's first chunk (128 tokens) reaches past K = 112: its first probe is there."""
    rng = np.random.default_rng(5)
    first = Probing(probing.every, probing.agree, first=128)
    return [deepconf(spec, MODEL, first, n, 4, rng)
            for spec in specs_of(make_dataset(SIMULATED, seed=22))]


def test_probed_deepconf_matches_the_simulation() -> None:
    """Online DeepConf, n = 8 in batches of 4 with the 95% consensus stop; every token of a
    thought has the same confidence here, so no chain is stopped (checked in _searched)."""
    measured = _searched(Probing(112, 2), 8, "deepconf", **DEEPCONF)
    _agree(measured, _simulated_deepconf(Probing(112, 2), 8))
    for off in (Probing(224, 2), Probing(112, 3)):
        with pytest.raises(AssertionError):
            _agree(measured, _simulated_deepconf(off, 8))


def test_deepconf_chains_are_probed_and_stop_on_agreement() -> None:
    """DeepConf on the thinking engine (its top-k logprobs from the confidence model):
    probed chains end at an agreeing probe, and think less than unprobed ones."""
    engine = GroundTruthEngine(thinking=MODEL)
    rows = make_dataset(20, {1: Level(0.95)}, seed=41)
    probed, plain = [], []
    for row in rows:
        problem = Problem(row["problem"], row["answer"])
        probed.append(_search(problem, Probing(112, 2), 8, engine, "deepconf", **DEEPCONF))
        plain.append(_search(problem, Probing(None), 8, engine, "deepconf", **DEEPCONF))
    # Chunks stop at a blank line, also inside the answer: each answer is still written once.
    assert all(c.text.count("\\boxed{") == 1 for r in plain for c in r.candidates)
    leaves = [r.trace.nodes[c.leaf_id].kind for r in probed for c in r.candidates]
    assert leaves.count("probe") > len(leaves) // 2
    assert sum(r.thinking_tokens for r in probed) < 0.6 * sum(r.thinking_tokens for r in plain)
    assert mean(r.answer == row["answer"] for r, row in zip(probed, rows, strict=True)) > 0.8


def test_a_close_cut_between_two_calls_ends_the_thought_once() -> None:
    """Probes every 40 tokens cut some thoughts inside `</think>` (40 = 8 + 28 + 4): the
    next call finishes the tag and answers, as no stop string matches across the cut; the
    budget then forces no second close, and the search still matches the simulation."""
    probing = Probing(40, 3, budget=4000)
    engine = GroundTruthEngine(thinking=MODEL)
    cut = 0
    for row in make_dataset(150, seed=3):
        result = _search(Problem(row["problem"], row["answer"]), probing, 1, engine)
        assert [c.text.count(THINK_CLOSE) for c in result.candidates] == [1]
        cut += any(node.kind == "step" and node.text.startswith(THINK_CLOSE[i:])
                   for node in result.trace.nodes for i in range(2, len(THINK_CLOSE)))
    assert cut >= 3
    _agree(_searched(probing, 1), _simulated(probing, 1))
