"""The ground-truth test doubles keep the Engine and Verifier contracts and the model they
document: stop strings, token limits, seeds, cache counts; steps sound with probability
p, wrong answers by their weights, judge scores Beta(q, 1) and Beta(1, q)."""

import math
import random
from collections import Counter

import pytest

from lab.ground_truth.engine import EOS, REVIEW, GroundTruthEngine
from lab.ground_truth.task import TaskSpec, make_dataset, sound_path, specs_of, step_text
from lab.ground_truth.verifier import GroundTruthVerifier
from ttcq.worker.engines.base import GenerationRequest, SamplingParams
from ttcq.worker.verifiers.self_judge import SelfJudgeVerifier

SPEC = TaskSpec("t1", 0.6, 3, "42", (("41", 0.7), ("43", 0.3)))


def prompt(engine: GroundTruthEngine, spec: TaskSpec = SPEC, reply: str = "") -> tuple[int, ...]:
    ids = engine.chat_prompt([{"role": "system", "content": "Solve it."},
                              {"role": "user", "content": spec.problem_text()}])
    return tuple(ids + engine.tokenize(reply))


def generate(engine: GroundTruthEngine, ids: tuple[int, ...], n: int = 1, **params: object):
    values: dict[object, object] = {"max_tokens": 400, "seed": 0, **params}
    return engine.generate([GenerationRequest(ids, SamplingParams(**values), n)])[0]  # type: ignore[arg-type]


def within(count: int, trials: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - trials * p) < sigmas * math.sqrt(trials * p * (1 - p))


def test_a_problem_states_its_task() -> None:
    assert TaskSpec.find(SPEC.problem_text()) == SPEC
    assert TaskSpec.find("What is 2 + 3?") is None
    rows = make_dataset(10)
    assert [s.key for s in specs_of(rows)] == [row["custom_id"] for row in rows]
    assert {row["level"] for row in rows} == {1, 2, 3, 4, 5}


def test_text_round_trips_through_tokens() -> None:
    engine = GroundTruthEngine()
    text = "Step 1: é ∑ \\boxed{3}\n\n"
    assert engine.detokenize(engine.tokenize(text)) == text


def test_a_whole_solution_ends_with_eos_and_a_boxed_answer() -> None:
    engine = GroundTruthEngine()
    (c,) = generate(engine, prompt(engine))
    assert c.finish_reason == "stop" and c.hit_eos and c.token_ids[-1] == EOS
    assert c.completion_tokens == len(c.text) + 1 and c.text.count("\n\n") == SPEC.steps - 1
    assert "\\boxed{" in c.text.split("\n\n")[-1]


def test_a_stop_string_ends_a_step_and_is_kept() -> None:
    engine = GroundTruthEngine()
    (c,) = generate(engine, prompt(engine), stop=("\n\n",))
    assert (c.finish_reason, c.matched_stop) == ("stop", "\n\n")
    assert c.text.endswith("\n\n") and c.text.startswith("Step 1:")
    (nxt,) = generate(engine, prompt(engine, reply=c.text), stop=("\n\n",))
    assert nxt.text.startswith("Step 2:")


def test_the_token_limit_is_a_length_finish() -> None:
    engine = GroundTruthEngine()
    (c,) = generate(engine, prompt(engine), max_tokens=7)
    assert (c.finish_reason, c.matched_stop, c.completion_tokens) == ("length", None, 7)


def test_sample_j_is_seeded_with_seed_plus_j() -> None:
    engine = GroundTruthEngine()
    ids = prompt(engine)
    samples = generate(engine, ids, n=3, seed=10)
    assert [s.text for s in samples] == [generate(engine, ids, seed=10 + j)[0].text
                                         for j in range(3)]
    assert len({s.text for s in samples}) == 3


def test_greedy_is_the_likeliest_step_whatever_the_seed() -> None:
    engine = GroundTruthEngine()
    easy = TaskSpec("easy", 0.6, 3, "1", (("2", 1.0),))
    texts = {generate(engine, prompt(engine, easy), seed=s, temperature=0.0)[0].text
             for s in range(3)}
    assert len(texts) == 1 and "\\boxed{1}" in texts.pop()


def test_a_repeated_prompt_is_cached_but_for_its_last_token() -> None:
    engine = GroundTruthEngine()
    ids = prompt(engine)
    first, second = generate(engine, ids, n=2)
    assert (first.prompt_tokens, first.cached_tokens) == (len(ids), 0)
    assert second.cached_tokens == len(ids) - 1
    continued = ids + tuple(first.token_ids)
    assert generate(engine, continued)[0].cached_tokens == len(continued) - 1
    engine.reset()
    assert generate(engine, ids)[0].cached_tokens == 0


def test_steps_are_sound_with_probability_p_and_wrong_answers_follow_their_weights() -> None:
    engine = GroundTruthEngine()
    samples = generate(engine, prompt(engine), n=2000)
    sound_first = sum(sound_path([s.text])[0][1] for s in samples)
    assert within(sound_first, 2000, SPEC.p)
    answers = Counter(s.text.split("\\boxed{")[1].split("}")[0] for s in samples)
    assert within(answers["42"], 2000, SPEC.solve_rate)
    wrong = 2000 - answers["42"]
    assert within(answers["41"], wrong, 0.7)


def test_a_slipped_solution_never_recovers() -> None:
    engine = GroundTruthEngine()
    for s in generate(engine, prompt(engine), n=200):
        labels = [sound for _, sound in sound_path([s.text])]
        assert labels == sorted(labels, reverse=True)  # sound steps, then unsound ones
        assert ("\\boxed{42}" in s.text) == all(labels)


def test_self_refine_turns_get_a_review_then_a_fresh_attempt() -> None:
    engine = GroundTruthEngine()
    (attempt,) = generate(engine, prompt(engine))
    turns = [{"role": "user", "content": SPEC.problem_text()},
             {"role": "assistant", "content": attempt.text},
             {"role": "user", "content": "Review it."}]
    (review,) = generate(engine, tuple(engine.chat_prompt(turns)))
    assert review.text == REVIEW
    turns += [{"role": "assistant", "content": review.text},
              {"role": "user", "content": "Rewrite it."}]
    (rewrite,) = generate(engine, tuple(engine.chat_prompt(turns)))
    assert rewrite.text.startswith("Step 1:") and rewrite.hit_eos


@pytest.mark.parametrize("quality", [1.0, 3.0])
def test_judge_scores_have_their_documented_means(quality: float) -> None:
    judge = GroundTruthVerifier(quality)
    rng = random.Random(1)
    sound = [judge.path_score("k", [(step_text(1, True, rng.getrandbits(32)), True)])
             for _ in range(3000)]
    slipped = [judge.path_score("k", [(step_text(1, False, rng.getrandbits(32)), False)])
               for _ in range(3000)]
    # Beta(q, 1) has mean q/(q+1) and variance q/((q+1)^2 (q+2)).
    sd = math.sqrt(quality / ((quality + 1) ** 2 * (quality + 2)) / 3000)
    assert abs(sum(sound) / 3000 - quality / (quality + 1)) < 4 * sd
    assert abs(sum(slipped) / 3000 - 1 / (quality + 1)) < 4 * sd


def test_a_judge_is_deterministic_per_path_and_salts_are_independent() -> None:
    steps = [step_text(1, True, 5) + "\n\n", step_text(2, False, 6)]
    first = GroundTruthVerifier(2.0).score(SPEC.problem_text(), [steps])
    again = GroundTruthVerifier(2.0).score(SPEC.problem_text(), [steps])
    other = GroundTruthVerifier(2.0, salt="another").score(SPEC.problem_text(), [steps])
    assert first.scores == again.scores != other.scores
    assert len(first.scores[0]) == 2 and first.usage.prompt_tokens > 0
    assert GroundTruthVerifier().score("q", [["no ground-truth step"]]).scores == [[0.5]]


def test_self_judge_on_the_engine_is_the_ground_truth_judge() -> None:
    judge = GroundTruthVerifier(2.0)
    engine = GroundTruthEngine(judge)
    (solution,) = generate(engine, prompt(engine))
    steps = [s + "\n\n" for s in solution.text.split("\n\n")]
    via_engine = SelfJudgeVerifier(engine).score(SPEC.problem_text(), [steps])
    direct = judge.score(SPEC.problem_text(), [steps])
    assert via_engine.scores[0] == pytest.approx(direct.scores[0], abs=1e-12)
    assert via_engine.usage.prompt_tokens > 0


def test_a_judge_with_noisy_steps_flips_coins_on_the_first_steps() -> None:
    judge = GroundTruthVerifier(8.0, noisy_steps=2)
    rng = random.Random(2)

    def mean_score(depth: int, sound: bool) -> float:
        scores = []
        for _ in range(3000):
            path = [(step_text(d, True, rng.getrandbits(32)), True) for d in range(1, depth)]
            path.append((step_text(depth, sound, rng.getrandbits(32)), sound))
            scores.append(judge.path_score("k", path))
        return sum(scores) / len(scores)

    coin_sd = math.sqrt(1 / 12 / 3000)  # Beta(1, 1) is uniform
    for depth in (1, 2):
        assert abs(mean_score(depth, True) - 0.5) < 4 * coin_sd
        assert abs(mean_score(depth, False) - 0.5) < 4 * coin_sd
    assert mean_score(3, True) > 0.85 and mean_score(3, False) < 0.15  # q/(q+1) = 0.89
    assert "noisy_steps=2" in judge.name and GroundTruthVerifier(8.0).name == "ground_truth q=8"
    with pytest.raises(ValueError, match="noisy_steps"):
        GroundTruthVerifier(noisy_steps=-1)
