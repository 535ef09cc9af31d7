"""PNG plots of a report: accuracy against budget, tokens and FLOPs, one line per
configuration with its 95% interval as a band, a panel for all problems and one per level.
Drawn with matplotlib's Agg canvas directly (no pyplot: no global state, no display)."""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ttcq.api.report.data import Report, ReportPoint, panels, points_of

PANEL_WIDTH, PANEL_HEIGHT = 4.6, 3.4  # inches
MAX_COLUMNS = 3
DPI = 100
BAND_ALPHA = 0.15


def _panel_title(level: str | None) -> str:
    if level is None:
        return "all problems"
    return level if not level.replace(".", "").isdigit() else f"level {level}"


def _colors(report: Report) -> dict[str, Any]:
    """A color per configuration, the same in every plot."""
    palette = colormaps["tab10" if len(report.lines) <= 10 else "tab20"].colors  # type: ignore[attr-defined]
    return {line.configuration: palette[i % len(palette)]
            for i, line in enumerate(report.lines)}


def _draw_line(ax: Axes, points: list[ReportPoint], x_of: Callable[[ReportPoint], float],
               color: Any, label: str) -> None:
    points = [p for p in points if p.accuracy is not None and x_of(p) > 0]
    if not points:
        return
    xs = [x_of(p) for p in points]
    ys = [p.accuracy or 0.0 for p in points]
    lows, highs = [p.ci_low or 0.0 for p in points], [p.ci_high or 0.0 for p in points]
    ax.plot(xs, ys, marker="o", markersize=4, color=color, label=label)
    if len(points) > 1:
        ax.fill_between(xs, lows, highs, color=color, alpha=BAND_ALPHA, linewidth=0)
    else:  # a single budget (beam search is run per budget): its interval as a bar
        ax.errorbar(xs, ys, yerr=[[ys[0] - lows[0]], [highs[0] - ys[0]]], color=color,
                    capsize=3, linewidth=1)


def _figure(report: Report, x_of: Callable[[ReportPoint], float], x_label: str,
            title: str, log_base: int) -> Figure:
    levels = list(panels(report))
    columns = min(MAX_COLUMNS, len(levels))
    rows = math.ceil(len(levels) / columns)
    fig = Figure(figsize=(PANEL_WIDTH * columns, PANEL_HEIGHT * rows + 0.9), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    colors = _colors(report)
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True)
    for ax, level in zip(axes.flat, levels, strict=False):
        for name, points in points_of(report, level).items():
            _draw_line(ax, points, x_of, colors[name], name)
        ax.set_title(_panel_title(level))
        ax.set_xscale("log", base=log_base)
        if log_base == 2:  # budgets read better as 1, 2, 4, ... than as powers of two
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel(x_label)
        ax.set_ylabel("accuracy")
    for ax in list(axes.flat)[len(levels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center",
               ncols=min(2, max(1, len(labels))), fontsize="small", frameon=False)
    fig.suptitle(f"{title} (bands: 95% Wilson intervals)")
    return fig


def draw(report: Report, out_dir: Path) -> list[Path]:
    """Write the plots into out_dir; returns their paths."""
    plots = [
        ("accuracy_vs_budget.png", lambda p: float(p.budget),
         "budget n (samples, beams, leaves or attempts)", "Accuracy against budget", 2),
        ("accuracy_vs_tokens.png", lambda p: p.tokens_per_problem,
         "tokens per problem (prompt + completion + verifier)", "Accuracy against tokens", 10),
    ]
    if any(p.flops_per_problem > 0 for p in report.points):
        plots.append(("accuracy_vs_flops.png", lambda p: p.flops_per_problem,
                      "FLOPs per problem (estimated)", "Accuracy against compute", 10))
    written = []
    for name, x_of, x_label, title, base in plots:
        fig = _figure(report, x_of, x_label, title, base)
        fig.savefig(out_dir / name)
        written.append(out_dir / name)
    return written
