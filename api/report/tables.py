"""A report's numbers as CSV (one row per configuration, level and budget) and as a
markdown page (a table for all problems, then one per level, then the lines' batches)."""

import csv
from pathlib import Path

from ttcq.api.report.data import Report, ReportPoint, panels, points_of

CSV_COLUMNS = ["configuration", "level", "budget", "problems", "graded", "correct",
               "accuracy", "ci_low", "ci_high", "tokens_per_problem", "flops_per_problem",
               "thinking_share"]


def write_csv(report: Report, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for point in report.points:
            row = point.model_dump(include=set(CSV_COLUMNS))
            row["level"] = "all" if point.level is None else point.level
            writer.writerow(row)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _compact(value: float) -> str:
    """1234 -> 1.2k, 3.4e9 -> 3.4G: the order of magnitude at a glance."""
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _row(point: ReportPoint) -> str:
    interval = (f"{_percent(point.ci_low)}–{_percent(point.ci_high)}"
                if point.ci_low is not None else "–")
    return (f"| {point.configuration} | {point.budget} | {point.graded} | "
            f"{_percent(point.accuracy)} | {interval} | {_compact(point.tokens_per_problem)} | "
            f"{_compact(point.flops_per_problem)} | {_percent(point.thinking_share)} |")


def markdown(report: Report) -> str:
    lines = ["# ttcq report", "",
             "Accuracy over solved problems with a gold answer; 95% Wilson intervals. Below "
             "a run's full budget N, tokens and FLOPs are its share n/N of what it spent; "
             "thinking is the share of generated tokens inside thoughts.", ""]
    for level in panels(report):
        lines += [f"## {'All problems' if level is None else f'Level {level}'}", "",
                  "| configuration | n | graded | accuracy | 95% interval | tokens/problem "
                  "| FLOPs/problem | thinking |", "|---|---:|---:|---:|---|---:|---:|---:|"]
        for points in points_of(report, level).values():
            lines += [_row(p) for p in points]
        lines.append("")
    lines += ["## Configurations", ""]
    for line in report.lines:
        rescored = f"; rescores {', '.join(map(str, line.rescore_ids))}" if line.rescore_ids else ""
        lines.append(f"- **{line.configuration}**: batches "
                     f"{', '.join(map(str, line.batch_ids))}{rescored}")
    return "\n".join(lines) + "\n"


def write_markdown(report: Report, path: Path) -> None:
    path.write_text(markdown(report), encoding="utf-8")
