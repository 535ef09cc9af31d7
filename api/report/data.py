"""The numbers of a report: per configuration line, level and budget, accuracy with a 95%
Wilson interval and the compute spent per problem. The API serves them as JSON and the
CLI draws them, from the API or straight from a database."""

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import Session

from ttcq.api.report import lines
from ttcq.db.models import Batch, Rescore
from ttcq.db.reports import CurveRow, batch_curves, rescore_curves, rescores_of

Z_95 = 1.959963984540054


class ReportLine(BaseModel):
    configuration: str = Field(description="the line's name in plots and tables")
    strategy: str
    settings: dict[str, Any] = Field(description="the config fields that define the line")
    batch_ids: list[uuid.UUID]
    rescore_ids: list[uuid.UUID] = Field(description="empty for the searches themselves")


class ReportPoint(BaseModel):
    configuration: str
    level: str | None = Field(description="the problems' `level` field; null for all problems")
    budget: int = Field(description="n: samples, beams, leaves or attempts")
    problems: int = Field(description="solved problems")
    graded: int = Field(description="solved problems with a gold answer")
    correct: int
    accuracy: float | None
    ci_low: float | None = Field(description="95% Wilson interval of the accuracy")
    ci_high: float | None
    tokens_per_problem: float = Field(
        description="prompt + completion + verifier tokens; below the run's full budget, "
                    "its share n/N of the run's tokens")
    flops_per_problem: float
    thinking_share: float | None = Field(
        default=None, description="of the generated tokens, the share inside reasoning "
                                  "models' thoughts; null where nothing was generated")


class Report(BaseModel):
    lines: list[ReportLine]
    levels: list[str] = Field(description="levels present, in order (may be empty)")
    points: list[ReportPoint]


def wilson(correct: int, graded: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion."""
    if graded == 0:
        return 0.0, 1.0
    p = correct / graded
    centre = (p + z * z / (2 * graded)) / (1 + z * z / graded)
    half = z / (1 + z * z / graded) * math.sqrt(p * (1 - p) / graded + z * z / (4 * graded**2))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class _Sums:
    problems: int = 0
    graded: int = 0
    correct: int = 0
    tokens: float = 0.0
    flops: float = 0.0
    generated: float = 0.0
    thinking: float = 0.0

    def add(self, row: CurveRow, share: float) -> None:
        self.problems += row.problems
        self.graded += row.graded
        self.correct += row.correct
        self.tokens += row.tokens * share
        self.flops += row.flops * share
        self.generated += row.generated * share
        self.thinking += row.thinking * share


@dataclass
class _Line:
    settings: dict[str, Any]
    batch_ids: list[uuid.UUID] = field(default_factory=list)
    rescore_ids: list[uuid.UUID] = field(default_factory=list)
    sums: dict[tuple[str | None, int], _Sums] = field(default_factory=lambda: defaultdict(_Sums))


def build_report(*, session: Session, batches: Sequence[Batch]) -> Report:
    """The report over these batches and every rescore of them."""
    found: dict[lines.Key, _Line] = {}
    sources: dict[uuid.UUID, _Line] = {}
    for batch in batches:
        chosen = lines.settings(batch.config, batch.model)
        line = found.setdefault(lines.key_of(chosen), _Line(chosen))
        line.batch_ids.append(batch.id)
        sources[batch.id] = line
    by_id = {b.id: b for b in batches}
    rescores = _latest(rescores_of(session=session, batch_ids=list(by_id)))
    for rescore in rescores:
        batch = by_id[rescore.batch_id]
        chosen = lines.settings(batch.config, batch.model) | lines.rescore_settings(rescore)
        line = found.setdefault(lines.key_of(chosen), _Line(chosen))
        line.batch_ids.append(batch.id)
        line.rescore_ids.append(rescore.id)
        sources[rescore.id] = line
    rows = batch_curves(session=session, batch_ids=list(by_id)) + rescore_curves(
        session=session, rescore_ids=[r.id for r in rescores])
    _accumulate(rows, sources)
    return _report(list(found.values()))


def _latest(rescores: list[Rescore]) -> list[Rescore]:
    """A batch rescored the same way twice counts once: its latest rescore."""
    latest = {}
    for rescore in sorted(rescores, key=lambda r: r.created_at):
        latest[rescore.batch_id, rescore.verifier, rescore.aggregation, rescore.selection] = rescore
    return list(latest.values())


def _accumulate(rows: list[CurveRow], sources: dict[uuid.UUID, _Line]) -> None:
    # A run at budget N read at n spent (on average) n/N of what it spent in all: its
    # samples, subtrees or rounds are alike. The full budget is the largest n it has.
    full: dict[uuid.UUID, int] = defaultdict(int)
    for row in rows:
        full[row.source] = max(full[row.source], row.n)
    for row in rows:
        share = row.n / full[row.source]
        sums = sources[row.source].sums
        sums[row.level, row.n].add(row, share)
        if row.level is not None:
            sums[None, row.n].add(row, share)  # the all-problems panel


def _report(found: list[_Line]) -> Report:
    names = lines.names(line.settings for line in found)
    levels = sorted({lvl for line in found for lvl, _ in line.sums if lvl is not None},
                    key=_natural)
    report_lines, points = [], []
    for name, line in zip(names, found, strict=True):
        report_lines.append(ReportLine(
            configuration=name, strategy=line.settings["strategy"], settings=line.settings,
            batch_ids=sorted(set(line.batch_ids)), rescore_ids=line.rescore_ids))
        points += [_point(name, level, n, sums) for (level, n), sums in line.sums.items()]
    points.sort(key=lambda p: (names.index(p.configuration), _natural(p.level), p.budget))
    return Report(lines=report_lines, levels=levels, points=points)


def _point(name: str, level: str | None, n: int, sums: _Sums) -> ReportPoint:
    low, high = wilson(sums.correct, sums.graded) if sums.graded else (None, None)
    return ReportPoint(
        configuration=name, level=level, budget=n, problems=sums.problems, graded=sums.graded,
        correct=sums.correct, accuracy=sums.correct / sums.graded if sums.graded else None,
        ci_low=low, ci_high=high, tokens_per_problem=sums.tokens / max(sums.problems, 1),
        flops_per_problem=sums.flops / max(sums.problems, 1),
        thinking_share=sums.thinking / sums.generated if sums.generated else None,
    )


def _natural(level: str | None) -> tuple[int, float, str]:
    """All problems first, then levels by number where they are numbers ("Level 3" too)."""
    if level is None:
        return (0, 0.0, "")
    digits = "".join(ch for ch in level if ch.isdigit() or ch == ".")
    try:
        return (1, float(digits), level)
    except ValueError:
        return (2, 0.0, level)


def points_of(report: Report, level: str | None) -> dict[str, list[ReportPoint]]:
    """Per configuration, its points at one level (None: all problems), by budget."""
    out: dict[str, list[ReportPoint]] = {line.configuration: [] for line in report.lines}
    for point in report.points:
        if point.level == level:
            out[point.configuration].append(point)
    return out


def panels(report: Report) -> Iterable[str | None]:
    """All problems, then each level (when the problems have levels)."""
    yield None
    yield from report.levels
