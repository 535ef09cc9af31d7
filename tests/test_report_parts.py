"""The pure parts of reports and progress: intervals, line names, the lookahead default,
the rescore of one search, and `ttcq run`'s progress line."""

import io
from typing import Any

import pytest

from ttcq.api.progress import LiveProgress
from ttcq.api.report import lines
from ttcq.api.report.data import wilson
from ttcq.worker.search.config import ConfigError, make_config
from ttcq.worker.search.rescore import curve_group_size, rescore
from ttcq.worker.search.types import Candidate


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def config(**values: Any) -> dict[str, Any]:
    return make_config(**values).model_dump(mode="json")


def test_batches_that_differ_in_budget_or_seed_share_a_line() -> None:
    four = lines.settings(config(strategy="beam_search", n=4, seed=1), "")
    sixteen = lines.settings(config(strategy="beam_search", n=16, seed=2), "")
    assert lines.key_of(four) == lines.key_of(sixteen)
    majority = lines.settings(config(strategy="majority", beam_width=2), "")
    assert lines.key_of(majority) == lines.key_of(lines.settings(config(), ""))


def test_lines_are_named_by_what_sets_them_apart() -> None:
    chosen = [lines.settings(config(strategy="lookahead", n=8, beam_width=2), ""),
              lines.settings(config(strategy="majority", verifier="none"), ""),
              lines.settings(config(strategy="best_of_n", temperature=0.4), ""),
              lines.settings(config(strategy="best_of_n", temperature=0.9), "")]
    assert lines.names(chosen) == [
        "lookahead M=2 k=1 · checker/min", "majority",
        "best_of_n · checker/min (temperature=0.4)", "best_of_n · checker/min (temperature=0.9)"]


def test_lookahead_without_a_lookahead_takes_one_greedy_step() -> None:
    assert make_config(strategy="lookahead").lookahead == 1
    assert make_config(strategy="lookahead", lookahead=3).lookahead == 3
    assert make_config(strategy="beam_search").lookahead == 0
    with pytest.raises(ConfigError, match="lookahead >= 1"):
        make_config(strategy="lookahead", lookahead=0)


def candidate(index: int, answer: str, scores: list[float], group: int | None = None
              ) -> Candidate:
    return Candidate(index, index if group is None else group, index, "", "stop", answer,
                     answer, step_scores=scores)


def test_a_rescore_chooses_again_and_reads_the_curve_again() -> None:
    found = [candidate(0, "1", [0.9, 0.2]), candidate(1, "2", [0.5, 0.6]),
             candidate(2, "2", [0.3, 0.4])]
    by_min = rescore(found, aggregation="min", selection="naive", group_size=1)
    assert (by_min.selected, by_min.curve) == (1, {1: 0, 2: 1, 3: 1})
    by_last = rescore(found, aggregation="last", selection="naive", group_size=1)
    assert by_last.selected == 1 and by_last.candidates[0].score == 0.2
    judged = rescore(found, aggregation="min", selection="naive", group_size=1,
                     step_scores=[[1.0], [0.1], [0.2]])
    assert judged.selected == 0 and not found[0].selected  # the stored ones are untouched


def test_curves_count_subtrees_for_dvts_and_one_point_for_beam_search() -> None:
    assert curve_group_size(make_config(strategy="dvts", n=8, beam_width=4)) == 4
    assert curve_group_size(make_config(strategy="beam_search", n=8)) == 8
    assert curve_group_size(make_config(strategy="majority")) == 1
    leaves = [candidate(i, str(i), [0.1 * i], group=i // 2) for i in range(4)]
    assert rescore(leaves, aggregation="min", selection="naive", group_size=2).curve == {
        2: 1, 4: 3}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal() -> None:
    out = Terminal()
    progress = LiveProgress(3, out)
    progress.add("succeeded", True, 1500)
    progress.add("failed", None, 0)
    line = out.getvalue().split("\r")[-1]
    assert line.startswith("2/3 problems · 1/1 correct (100%) · 1.5k tokens · ")
    assert "1 not solved" in line and "left" in line and not line.endswith("\n")
    progress.add("succeeded", False, 10)
    assert out.getvalue().endswith("\n") and "left" not in out.getvalue().split("\r")[-1]


def test_progress_logs_a_line_now_and_then_elsewhere() -> None:
    out = io.StringIO()
    progress = LiveProgress(100, out)
    for _ in range(5):
        progress.add("succeeded", None, 10)
    assert out.getvalue().count("\n") == 1 and "\r" not in out.getvalue()


def test_adaptive_search_fields_split_lines_only_where_they_are_read() -> None:
    stored_before = {k: v for k, v in config(strategy="majority").items()
                     if k not in ("pf_temperature", "pf_rounds", "rebase_temperature",
                                  "early_stop", "early_stop_round", "early_stop_min")}
    assert lines.key_of(lines.settings(stored_before, "")) == lines.key_of(
        lines.settings(config(strategy="majority"), ""))
    early = lines.settings(config(strategy="majority", early_stop=0.75), "")
    assert early["early_stop"] == 0.75
    assert lines.key_of(early) != lines.key_of(lines.settings(config(strategy="majority"), ""))
    cold = lines.settings(config(strategy="particle_filtering", pf_temperature=1.0), "")
    assert cold["pf_temperature"] == 1.0 and "rebase_temperature" not in cold
    one, three = (lines.settings(config(strategy="particle_filtering", pf_rounds=r), "")
                  for r in (1, 3))
    assert lines.key_of(one) == lines.key_of(three)  # rounds are budget, read n, 2n, ...
    assert curve_group_size(make_config(strategy="particle_filtering", n=8)) == 8
    assert curve_group_size(make_config(strategy="rebase", n=8)) == 8
