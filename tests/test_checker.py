"""The checker verifier: arithmetic and simple algebra in a step, re-checked exactly."""

import string
import time

import pytest

from ttcq.worker.verifiers.checker import CheckerVerifier, claims, score_step
from ttcq.worker.verifiers.factory import make_verifier


@pytest.mark.parametrize(
    "step",
    [
        "She makes 16 x 3 = 48 eggs a day.",
        "16 × 3 = 48",
        "12 ÷ 4 = 3",
        "$2 * 9 = $18",
        "9 eggs * $2 = $18 every day",
        "16 eggs - 3 eggs - 4 eggs = 9 eggs",
        "(2 + 3) * 4 = 20 = 4 * 5",
        "Total = 16 + 4 = 20",
        "2^10 = 1024",
        "3² = 9",
        "5 - 8 = -3",
        "3.5 + 1.5 = 5.0",
        "1 1/2 * 4 = 6",
        r"$\frac{1}{2} \times 10 = 5$",
        "12 divided by 4 = 3",
        "- 16 - 3 - 4 = 9",
        "4 * 5 = 20 m",
    ],
)
def test_true_arithmetic_scores_one(step: str) -> None:
    assert score_step(step) == 1.0


@pytest.mark.parametrize(
    "step",
    [
        "So 48 x 3 = 184 cents.",
        "(2 + 3) * 4 = 20 = 4 * 6",
        "2**10 = 1000",
        "0.5 * 3 = 1.6",
        "3 times 4 = 13",
        "5 + 3 = 8 = 9",
    ],
)
def test_false_arithmetic_scores_zero(step: str) -> None:
    assert score_step(step) == 0.0


def test_the_smollm2_mistake_fails_the_step_that_makes_it() -> None:
    # SmolLM2-135M on GSM8K: one right product, then a wrong one in the same step.
    assert score_step("She lays 16 x 3 = 48 eggs. Then 48 x 3 = 184 eggs.") == 0.0
    assert score_step("She lays 16 x 3 = 48 eggs.") == 1.0


@pytest.mark.parametrize(
    "step",
    [
        "She has 5 apples.",
        "Let x be the number of coins.",
        "x = 5",
        "",
        "1 hour = 60 minutes",
        "half of 12 = 7",  # "half of" is not arithmetic the checker reads: no claim
        "5 / 0 = 1",
        "2^0.5 = 1.41",
    ],
)
def test_nothing_checkable_is_neutral(step: str) -> None:
    assert score_step(step) == 0.5


def test_gsm8k_calculator_annotations_are_checked() -> None:
    assert score_step("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.") == 1.0
    assert score_step("She makes <<9*2=19>>19 dollars.") == 0.0
    assert score_step("It came to 80,000+50,000=$<<80000+50000=130000>>130,000") == 1.0


def test_thousands_commas_and_dollars() -> None:
    assert score_step("$80,000 + $50,000 = $130,000") == 1.0
    assert score_step("1,000 * 3 = 3,000") == 1.0
    assert score_step("1,000 * 3 = 30,000") == 0.0


@pytest.mark.parametrize(
    ("step", "score"),
    [
        ("10/3 = 3.33", 1.0),
        ("10/3 = 3.34", 1.0),  # rounded up from 3.333…: within one unit of the last place
        ("10/3 = 3.3", 1.0),
        ("10/3 = 3.35", 0.0),
        ("10 / 3 = 3", 0.0),  # no decimals written: exact
        ("1/4 = 0.25", 1.0),
        ("3/4 = 0.7", 1.0),
        ("3/4 = 0.8", 1.0),
        ("3/4 = 0.9", 0.0),
        (".5 * 30 = 15", 1.0),
    ],
)
def test_decimals_and_fractions(step: str, score: float) -> None:
    assert score_step(step) == score


@pytest.mark.parametrize(
    ("step", "score"),
    [
        ("20% of 50 = 10", 1.0),
        ("20% of 50 = 15", 0.0),
        ("50% = 0.5", 1.0),
        ("100% - 20% = 80%", 1.0),
        ("12/20 x 100% = 60% of the students", 1.0),
        ("12.5% of 80 = 10", 1.0),
    ],
)
def test_percentages(step: str, score: float) -> None:
    assert score_step(step) == score


@pytest.mark.parametrize(
    ("step", "score"),
    [
        ("2x + 3 = 7, so 2x = 4 and x = 2.", 1.0),
        ("2x + 3 = 7, so 2x = 4 and x = 3.", 0.0),
        ("2(x+3) = 2x + 6", 1.0),
        ("2(x+3) = 2x + 5", 0.0),
        ("x = 2 + 3 = 5", 1.0),
        ("x^2 - 5x + 6 = 0, so x = 2", 1.0),
        ("x^2 - 5x + 6 = 0, so x = 4", 0.0),
        ("x^2 = 4 and x = 2", 1.0),  # picking a root is not an error
        ("1/x = 0, so x = 0", 0.0),
        ("y = 3 and x = 5", 0.5),  # different variables: nothing to compare
    ],
)
def test_one_variable_algebra(step: str, score: float) -> None:
    assert score_step(step) == score


@pytest.mark.parametrize(
    "step",
    [
        "__import__('os').system('x') = 1",
        "<<__import__('os').system('touch /tmp/pwned')=0>>",
        "exec('1') = 1",
        "lambda: 1 = 1",
        "().__class__ = 1",
        "9^9^9^9 = 1",
        "9**9**9**9 = 1",
        "2^100000 = 1",
        "(" * 200 + "1" + ")" * 200 + " = 1",
        "1" * 5000 + " = 1",
        "x^1000 = 1, x = 1",
        "1 = 1 " * 5000,
    ],
)
def test_hostile_text_is_neutral_and_fast(step: str) -> None:
    start = time.perf_counter()
    assert score_step(step) in (0.5, 1.0)
    assert time.perf_counter() - start < 2.0


def test_hostile_powers_are_never_computed() -> None:
    assert score_step("9^9^9^9 = 1") == 0.5
    assert score_step("2^64 = 18446744073709551616") == 1.0


def test_claims_are_whitelisted_text() -> None:
    for claim, _ in claims("__import__('os').system('x') = 1 and 2 * 3 = 6"):
        assert set(claim) <= set(string.digits + string.ascii_letters + ".+-*/^()%= ")


def test_verifier_scores_every_step_and_costs_no_tokens() -> None:
    verifier = CheckerVerifier()
    out = verifier.score("q", [["2 + 2 = 4", "2 + 2 = 5", "so"], ["7 * 6 = 42"]])
    assert out.scores == [[1.0, 0.0, 0.5], [1.0]]
    assert out.usage.calls == 1
    assert out.usage.prompt_tokens == out.usage.cached_tokens == out.usage.completion_tokens == 0


def test_verifier_last_only_scores_the_last_step() -> None:
    out = CheckerVerifier().score("q", [["2 + 2 = 5", "2 + 2 = 4"]], last_only=True)
    assert out.scores == [[1.0]]


def test_verifier_without_candidates_makes_no_call() -> None:
    out = CheckerVerifier().score("q", [])
    assert out.scores == [] and out.usage.calls == 0


def test_factory_builds_the_checker() -> None:
    assert make_verifier("checker", engine=None).name == "checker"  # type: ignore[arg-type]
