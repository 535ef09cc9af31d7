"""Fitting a policy from stored runs (pure), and `ttcq policy fit` on Postgres."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from sqlmodel import select

from lab.ground_truth.task import make_dataset
from lab.ground_truth_batches import run_batch
from tests.utils.api_factories import ALICE, BOB, api_settings, auth, running_api
from ttcq.api.cli import main
from ttcq.api.datasets import Limits, to_problems
from ttcq.db.models import Batch, Rescore
from ttcq.worker.rescoring import RescoreError, rescore_batch
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.policy import (
    DEFAULT_POLICY,
    Policy,
    PolicyError,
    allowance,
    budget_for_tokens,
    expected_tokens,
    fitting_budget,
)
from ttcq.worker.search.policy_fit import (
    FitError,
    Probe,
    fit_policy,
    probe_outcome,
    probe_rows,
    quantile_thresholds,
)
from ttcq.worker.search.policy_runs import Sample, StoredBatch, StoredJob

RIGHT, WRONG = Sample("7", True), Sample("9", False)
EASY = [RIGHT] * 4  # unanimous and right
HARD = [WRONG, WRONG, RIGHT, Sample(None, False)]  # the probe's majority is wrong


def sampling(easy: int, hard: int) -> StoredBatch:
    """A majority batch of n=16: easy problems right at every budget, hard ones wrong."""
    jobs = {f"e{i}": StoredJob(1600, 0, {4: True, 16: True}, EASY) for i in range(easy)}
    jobs |= {f"h{i}": StoredJob(1600, 0, {4: False, 16: False}, HARD) for i in range(hard)}
    return StoredBatch("majority", {"strategy": "majority", "n": 16, "verifier": "none"}, jobs)


def beam(easy: int, hard: int, tokens: int) -> StoredBatch:
    """A beam search of n=16 that solves the hard problems, at a price."""
    jobs = {f"e{i}": StoredJob(tokens, 100, {16: True}) for i in range(easy)}
    jobs |= {f"h{i}": StoredJob(tokens, 100, {16: True}) for i in range(hard)}
    config = {"strategy": "beam_search", "n": 16, "beam_width": 4, "verifier": "prm",
              "lookahead": 0, "aggregation": "min"}
    return StoredBatch("beam", config, jobs)


def test_probe_outcome_is_the_majority_with_ties_to_the_first_answer() -> None:
    assert probe_outcome(EASY) is True
    assert probe_outcome(HARD) is False
    assert probe_outcome([RIGHT, WRONG]) is True and probe_outcome([WRONG, RIGHT]) is False
    assert probe_outcome([Sample(None, False)] * 3) is False


def test_quantile_thresholds_fall_and_end_at_zero() -> None:
    assert quantile_thresholds([0.25] * 5 + [1.0] * 5, 2) == [1.0, 0.0]
    assert quantile_thresholds([0.0, 0.5, 1.0], 4) == [1.0, 0.5, 0.0]
    assert quantile_thresholds([0.5] * 4, 3) == [0.0]  # one difficulty: one bin
    # More distinct values than bins: quantiles.
    assert quantile_thresholds([i / 10 for i in range(10)], 2) == [0.5, 0.0]


def test_fit_settles_easy_problems_and_searches_hard_ones() -> None:
    policy = fit_policy([sampling(10, 10), beam(10, 10, 2000)], probe=4, bins=2)
    easy, hard = policy.bins
    assert (easy.min_confidence, easy.strategy, easy.n) == (1.0, "majority", 0)
    assert (hard.strategy, hard.n, hard.config["beam_width"]) == ("beam_search", 16, 4)
    assert hard.config["verifier"] == "prm" and policy.budget == 16
    # The fitted policy runs: every bin's config is a valid search config.
    make_config(strategy="compute_optimal", verifier="prm", policy=policy.model_dump())


def test_a_tight_target_keeps_the_cheapest_choice_that_fits() -> None:
    # Probe: 4/16 of 1600 = 400 tokens; beam: 400 + 2100. Half the problems are hard:
    # beam everywhere costs 2500 a problem, beam on hard ones only 1450.
    batches = [sampling(10, 10), beam(10, 10, 2000)]
    loose = fit_policy(batches, bins=2, target_tokens=1500, difficulty="agreement")
    tight = fit_policy(batches, bins=2, target_tokens=1000, difficulty="agreement")
    assert [b.n for b in loose.bins] == [0, 16]
    assert [b.n for b in tight.bins] == [0, 0]
    assert "expected 400 tokens per problem, accuracy 0.500" in tight.description
    # Free to choose the probe, the fit takes the cheaper one of 2 samples (the same 0.5).
    cheapest = fit_policy(batches, bins=2, target_tokens=1000)
    assert cheapest.probe == 2 and "expected 200 tokens per problem" in cheapest.description


def test_fit_needs_a_sampling_batch_to_read_the_probe_from() -> None:
    with pytest.raises(FitError, match="no sampling batch"):
        fit_policy([beam(3, 3, 100)], difficulty="agreement")
    with pytest.raises(FitError, match="no scored sampling batch"):
        fit_policy([sampling(3, 3), beam(3, 3, 100)], difficulty="verifier")
    # Left to choose, it runs the one strategy there is, with no probe.
    policy = fit_policy([beam(3, 3, 100)])
    assert policy.probe == 0 and [(b.strategy, b.n) for b in policy.bins] == [("beam_search", 16)]


def scored(easy: int, hard: int) -> StoredBatch:
    """A best-of-N batch of n=16 whose every probe is unanimous, right on easy problems
    and wrong on hard ones; the verifier scores the easy ones' samples high."""
    jobs = {f"e{i}": StoredJob(1600, 800, {4: True, 16: True},
                               [Sample("7", True, 0.9)] * 4) for i in range(easy)}
    jobs |= {f"h{i}": StoredJob(1600, 800, {4: False, 16: False},
                                [Sample("9", False, 0.2)] * 4) for i in range(hard)}
    config = {"strategy": "best_of_n", "n": 16, "verifier": "prm", "aggregation": "last"}
    return StoredBatch("best_of_n", config, jobs)


def test_scores_tell_apart_what_agreement_cannot() -> None:
    unanimous = sampling(10, 10)
    for job in unanimous.jobs.values():
        job.samples = [Sample("7", True)] * 4 if job.points[4] else [Sample("9", False)] * 4
    batches = [unanimous, scored(10, 10), beam(10, 10, 2000)]
    policy = fit_policy(batches, bins=2, target_tokens=2000)
    assert (policy.difficulty, policy.aggregation) == ("verifier", "last")
    assert [(b.strategy, b.n) for b in policy.bins] == [("majority", 0), ("beam_search", 16)]
    # Settled: 1 of the 16 scored samples, 150 tokens; hard: that and a beam search.
    assert [b.tokens for b in policy.bins] == [150, 2250] and policy.probe_tokens == 150
    assert 0.2 < policy.bins[0].min_confidence <= 0.9
    by_agreement = fit_policy(batches, bins=2, target_tokens=2000, difficulty="agreement")
    assert len(by_agreement.bins) == 1  # every probe is unanimous: one bin
    make_config(strategy="compute_optimal", verifier="prm", policy=policy.model_dump())


def test_no_probe_where_none_pays_for_itself() -> None:
    """Every probe looks the same and beam search solves everything: a probe only costs."""
    same = sampling(10, 10)
    for job in same.jobs.values():
        job.samples = HARD
    policy = fit_policy([same, beam(10, 10, 2000)], bins=2, target_tokens=3000)
    assert policy.probe == 0 and policy.probe_tokens == 0
    assert [(b.strategy, b.n, b.tokens) for b in policy.bins] == [("beam_search", 16, 2100)]
    assert "no probe: 1.000 at 2100 tokens" in policy.description
    forced = fit_policy([same, beam(10, 10, 2000)], bins=2, target_tokens=3000,
                        difficulty="agreement")
    assert forced.probe == 4 and forced.bins[0].tokens == 2500


def test_fit_refuses_compute_optimal_batches() -> None:
    adaptive = beam(2, 2, 100)
    adaptive.config = {"strategy": "compute_optimal", "n": 16}
    with pytest.raises(FitError, match="is compute_optimal: fit from fixed strategies"):
        fit_policy([sampling(2, 2), adaptive])


def test_fit_needs_shared_problems() -> None:
    other = beam(0, 0, 100)
    other.jobs = {"x": StoredJob(1, 0, {16: True})}
    with pytest.raises(FitError, match="share no graded problem"):
        fit_policy([sampling(2, 2), other])


@pytest.fixture
def stored_batches(sessions: Any) -> list[str]:
    rows = make_dataset(40, seed=3)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, 100)))
    majority = run_batch(sessions, problems, quality=2.0, strategy="majority", n=8,
                         verifier="none")
    tree = run_batch(sessions, problems, quality=2.0, strategy="beam_search", n=8,
                     beam_width=4, verifier="self_judge")
    return [str(majority), str(tree)]


def test_cli_fits_a_policy_from_a_database(stored_batches: list[str], db_url: str,
                                           tmp_path: Any) -> None:
    out = tmp_path / "policy.yaml"
    result = CliRunner().invoke(main, ["policy", "fit", *stored_batches, "--db", db_url,
                                       "-o", str(out), "--bins", "3",
                                       "--difficulty", "agreement"])
    assert result.exit_code == 0, result.output
    policy = Policy.model_validate(yaml.safe_load(out.read_text()))
    assert policy.probe == 4 and 1 <= len(policy.bins) <= 3
    assert policy.bins[-1].min_confidence == 0.0
    assert {b.strategy for b in policy.bins} <= {"majority", "beam_search"}
    assert "fitted on 40 problems" in policy.description
    assert result.stdout.startswith("probe: agreement of 4\nbin 1: agreement >= ")


def test_cli_chooses_the_probe_by_cross_validation(stored_batches: list[str], db_url: str,
                                                  tmp_path: Any) -> None:
    out = tmp_path / "policy.yaml"
    result = CliRunner().invoke(main, ["policy", "fit", *stored_batches, "--db", db_url,
                                       "-o", str(out), "--tokens", "5000"])
    assert result.exit_code == 0, result.output
    policy = Policy.model_validate(yaml.safe_load(out.read_text()))
    # No scored sampling batch: agreement of 2 or 4, or no probe, were tried.
    assert "5-fold cross-validation (no probe: " in policy.description
    assert "agreement of 2: " in policy.description and "verifier" not in policy.description
    shown = "no probe" if policy.probe == 0 else f"agreement of {policy.probe}"
    assert result.stdout.startswith(f"probe: {shown}\n")


LOCAL_TOKEN = "local-token"  # the owner of run_batch's batches, `local`


@pytest.fixture
def api_url(db_url: str, redis_url: str) -> Iterator[str]:
    tokens = [f"{ALICE}:alice", f"{BOB}:bob", f"{LOCAL_TOKEN}:local"]
    with running_api(api_settings(db_url, redis_url, api_tokens=tokens)) as (_, base_url):
        yield base_url


def test_the_api_fits_the_callers_own_batches(
    stored_batches: list[str], api_url: str, tmp_path: Any,
) -> None:
    """`ttcq policy fit` without --db asks the API; the batches' owner is `local`."""
    out = tmp_path / "policy.yaml"
    result = CliRunner().invoke(main, [
        "policy", "fit", *stored_batches, "-o", str(out), "--tokens", "5000",
        "--api-url", api_url, "--token", LOCAL_TOKEN])
    assert result.exit_code == 0, result.output
    policy = Policy.model_validate(yaml.safe_load(out.read_text()))
    assert "fitted on 40 problems for at most 5000 tokens" in policy.description
    with httpx.Client(base_url=api_url) as http:
        body = {"batch_ids": stored_batches, "tokens": 5000}
        fitted = http.post("/v1/policies/fit", json=body, headers=auth(LOCAL_TOKEN))
        assert fitted.status_code == 200 and Policy.model_validate(fitted.json()) == policy
        # Someone else's batches are as missing as missing ones; nothing to fit is a 422.
        theirs = http.post("/v1/policies/fit", json=body, headers=auth(BOB))
        assert theirs.status_code == 404 and "no such batch" in theirs.text
        refused = http.post("/v1/policies/fit", headers=auth(LOCAL_TOKEN),
                            json={"batch_ids": stored_batches[1:], "difficulty": "agreement"})
        assert refused.status_code == 422 and "no sampling batch" in refused.text
        bad = http.post("/v1/policies/fit", headers=auth(LOCAL_TOKEN),
                        json={"batch_ids": stored_batches, "difficulty": "vibes"})
        assert bad.status_code == 422 and "difficulty" in bad.text


def test_cli_names_a_missing_batch(db_url: str, tmp_path: Any) -> None:
    missing = "00000000-0000-0000-0000-000000000001"
    result = CliRunner().invoke(main, ["policy", "fit", missing, "--db", db_url,
                                       "-o", str(tmp_path / "p.yaml")])
    assert result.exit_code != 0 and f"no batch {missing}" in result.output


def test_a_fitted_policy_knows_its_costs_and_a_batch_budget_picks_n() -> None:
    policy = fit_policy([sampling(10, 10), beam(10, 10, 2000)], bins=2)
    assert policy.probe_tokens == 400
    assert [(b.share, b.tokens) for b in policy.bins] == [(0.5, 400), (0.5, 2500)]
    assert expected_tokens(policy, 16) == 1450  # half settled, half probe + beam search
    assert expected_tokens(policy, 8) == 925  # beam search at n=8 costs half as much
    n = budget_for_tokens(policy, 925 * 20, 20)
    assert n in (8, 9, 10)  # 9 and 10 round to the same 8 beams (width 4)
    assert budget_for_tokens(policy, 1450 * 20, 20) >= 16


def test_the_ledger_shares_what_is_left_over_the_jobs_to_come() -> None:
    policy = fit_policy([sampling(10, 10), beam(10, 10, 2000)], bins=2, difficulty="agreement")
    assert expected_tokens(policy, 16) == 1450
    # 20 problems, 29,000 tokens: 5 done for 10,000, 3 running (1,450 each expected).
    left = allowance(policy, batch_tokens=29_000, spent=10_000, finished=5, running=3,
                     total=20, n=16)
    assert left == (29_000 - 10_000 - 3 * 1450) / 12
    assert allowance(policy, batch_tokens=29_000, spent=40_000, finished=5, running=0,
                     total=20, n=16) == 0.0  # overspent: only probes are left
    assert fitting_budget(policy, 1450) in (16, 17, 18)  # 17, 18 round to the same 16 beams
    assert fitting_budget(policy, 100) is None


def test_a_batch_budget_below_the_probe_or_without_fitted_costs_is_refused() -> None:
    policy = fit_policy([sampling(10, 10), beam(10, 10, 2000)], bins=2)
    with pytest.raises(PolicyError, match="batch_tokens: 100 tokens per problem is below"):
        budget_for_tokens(policy, 2000, 20)
    with pytest.raises(PolicyError, match="no fitted token numbers"):
        budget_for_tokens(DEFAULT_POLICY, 10**6, 20)



def test_a_compute_optimal_batch_is_not_rescored(sessions: Any) -> None:
    rows = make_dataset(3, seed=2)
    problems = list(to_problems(enumerate(rows, start=1), limits=Limits(10_000, 10)))
    batch_id = run_batch(sessions, problems, quality=2.0, strategy="compute_optimal",
                         verifier="self_judge")
    with sessions() as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        with pytest.raises(RescoreError, match="cannot be rescored"):
            rescore_batch(session=session, batch=batch, selection="majority")
        assert session.exec(select(Rescore)).all() == []  # nothing stored


def test_an_early_stopped_batch_is_read_at_every_budget() -> None:
    """A job that stopped after 4 of 16 samples has no point 8 or 16: its answer at 4
    stands there, and it cost what it drew (not 8/16 of it)."""
    stopped = StoredJob(400, 0, {1: False, 2: True, 4: True}, EASY)
    assert [stopped.correct_at(n) for n in (1, 3, 8, 16)] == [False, True, True, True]
    assert stopped.share(8, 16) == 1.0 and stopped.share(2, 16) == 0.5
    early = sampling(10, 10)
    early.jobs["e0"] = stopped
    early.config = {**early.config, "early_stop": 0.75}
    policy = fit_policy([sampling(10, 10), early, beam(10, 10, 2000)], bins=2)
    assert policy.bins  # no KeyError for the missing points


def test_one_verifier_per_fit_and_per_job() -> None:
    other = beam(10, 10, 2000)
    other.config = {**other.config, "verifier": "self_judge"}
    with pytest.raises(FitError, match=r"different verifiers \(prm, self_judge\)"):
        fit_policy([scored(10, 10), other])
    policy = fit_policy([scored(10, 10), beam(10, 10, 2000)], bins=2, difficulty="verifier")
    assert policy.verifier == "prm"
    with pytest.raises(ConfigError, match="policy.verifier: its thresholds are prm scores; "
                                          "this job's verifier is self_judge"):
        make_config(strategy="compute_optimal", verifier="self_judge",
                    policy=policy.model_dump())
    with pytest.raises(ConfigError, match="policy.bins.0: fitted with verifier prm; this "
                                          "job's verifier is checker"):
        make_config(strategy="compute_optimal", verifier="checker", policy={"bins": [
            {"min_confidence": 0.0, "strategy": "best_of_n", "n": 4,
             "config": {"verifier": "prm"}}]})


def test_a_probes_scores_are_reused_whatever_the_bins_aggregation() -> None:
    """Aggregation only combines step scores: a best-of-N bin of the probe's verifier
    does not pay for the probe's scores again, however it aggregates them."""
    source, by_min = scored(10, 10), scored(10, 10)
    by_min.config = {**by_min.config, "aggregation": "min"}
    by_min.name = "best_of_n min"
    rows = probe_rows([source, by_min], Probe("verifier", 4, 0), ["e0"])
    costs = {o.source: t for o, (t, _) in rows["e0"].options.items()
             if o.strategy == "best_of_n" and o.n == 16}
    assert costs == {0: 2400.0, 1: 2400.0}


def test_a_few_problems_are_cross_validated_leaving_one_out() -> None:
    policy = fit_policy([sampling(2, 1), beam(2, 1, 2000)], bins=2)
    assert "3-fold cross-validation" in policy.description
