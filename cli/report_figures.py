"""The plots of `simfleet report`, from each seed's per-step series (metrics/steps.csv, written by the glue runtime:
docs/records.md names its columns and units). matplotlib's Agg backend: no display, no server."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workloads.glue_runtime.series import COLUMNS as STEP_COLUMNS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Series = dict[str, list[float]]  # column -> values (NaN where the cell is empty)
# The columns glue writes (the glue runtime's own list: one source), less the two that are names, not numbers.
NUMERIC = tuple(c for c in STEP_COLUMNS if c not in ("action.cmd_type", "action.base_cmd.gait"))
DPI = 110


def parse_steps(text: str) -> Series:
    """steps.csv as numeric columns; `action.cmd_type` becomes `stop` (1 where the action was stop)."""
    reader = csv.DictReader(io.StringIO(text))
    series: Series = {column: [] for column in (*NUMERIC, "stop")}
    for row in reader:
        for column in NUMERIC:
            series[column].append(_number(row.get(column)))
        series["stop"].append(1.0 if row.get("action.cmd_type") == "stop" else 0.0)
    return series


def _number(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def integral(times: list[float], values: list[float]) -> list[float]:
    """The running trapezoid integral (distance from velocity, joules from watts), skipping empty cells."""
    total, out = 0.0, []
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        if i and not (math.isnan(t) or math.isnan(v) or math.isnan(times[i - 1]) or math.isnan(values[i - 1])):
            total += (t - times[i - 1]) * (v + values[i - 1]) / 2
        out.append(total)
    return out


@dataclass
class Plot:
    """One PNG: its file, title, caption, and how many points each seed drew (what "has data" means)."""

    file: str
    title: str
    caption: str
    points: dict[str, int] = field(default_factory=dict)


def _finite(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if not (math.isnan(x) or math.isnan(y))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _lines(axes: Axes, seeds: dict[str, Series], column: str, plot: Plot, label: str = "", style: str = "-") -> None:
    """One line per seed, each seed in its own colour on every plot (a commanded or second line dashed)."""
    for index, (name, series) in enumerate(seeds.items()):
        xs, ys = _finite(series["time"], series[column])
        if xs:
            axes.plot(xs, ys, style, linewidth=1.0, color=f"C{index % 10}", label=f"{name}{label}")
            plot.points[f"{name}{label}"] = plot.points.get(f"{name}{label}", 0) + len(xs)


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, imported when a plot is drawn: it takes a second to import, which every
    other command (they all share this entry point) would pay for nothing."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Figure, out: Path, plot: Plot) -> Plot:
    figure.tight_layout()
    figure.savefig(out / plot.file, dpi=DPI)
    _pyplot().close(figure)
    return plot


def _figure(rows: int = 1) -> tuple[Figure, list[Axes]]:
    figure, axes = _pyplot().subplots(rows, 1, figsize=(9, 3.2 * rows), sharex=True, squeeze=False)
    return figure, [a for row in axes for a in row]


def _finish(axes: list[Axes], seeds: dict[str, Series], xlabel: str = "simulation time (s)") -> None:
    axes[-1].set_xlabel(xlabel)
    for a in axes:
        a.grid(True, alpha=0.3)
        if len(seeds) > 1 or a.get_legend_handles_labels()[0][1:]:
            a.legend(fontsize=7, loc="best")


def velocity(seeds: dict[str, Series], out: Path) -> Plot:
    plot = Plot(
        "velocity.png", "Forward velocity", "Base forward velocity (solid) and the velocity the glue commanded (dashed), m/s."
    )
    figure, axes = _figure()
    _lines(axes[0], seeds, "base_vel.vx", plot)
    _lines(axes[0], seeds, "action.base_cmd.vx", plot, " commanded", "--")
    axes[0].set_ylabel("m/s")
    _finish(axes, seeds)
    return _save(figure, out, plot)


def pose(seeds: dict[str, Series], out: Path) -> Plot:
    plot = Plot(
        "pose.png",
        "Body pose",
        "Base height (m), and roll and pitch (rad): a fall shows as height dropping and roll or pitch leaving zero.",
    )
    figure, axes = _figure(2)
    _lines(axes[0], seeds, "base_pose.height", plot)
    axes[0].set_ylabel("height (m)")
    _lines(axes[1], seeds, "base_pose.roll", plot, " roll")
    _lines(axes[1], seeds, "base_pose.pitch", plot, " pitch", "--")
    axes[1].set_ylabel("rad")
    _finish(axes, seeds)
    return _save(figure, out, plot)


def energy(seeds: dict[str, Series], out: Path) -> Plot:
    plot = Plot("energy.png", "Energy", "Energy rate (W) and the energy used so far (kJ).")
    figure, axes = _figure(2)
    _lines(axes[0], seeds, "energy_rate", plot)
    axes[0].set_ylabel("W")
    for series in seeds.values():
        series["energy_kj"] = [j / 1000 for j in integral(series["time"], series["energy_rate"])]
    _lines(axes[1], seeds, "energy_kj", plot, " used")
    axes[1].set_ylabel("kJ")
    _finish(axes, seeds)
    return _save(figure, out, plot)


def nociceptor(seeds: dict[str, Series], out: Path) -> Plot:
    plot = Plot(
        "nociceptor.png", "Nociceptor", "The nociceptor signal the simulator reports (contact pain); peaks are hard contacts."
    )
    figure, axes = _figure()
    _lines(axes[0], seeds, "nociceptor", plot)
    axes[0].set_ylabel("nociceptor")
    _finish(axes, seeds)
    return _save(figure, out, plot)


def latency(seeds: dict[str, Series], out: Path) -> Plot:
    plot = Plot(
        "latency.png",
        "Brain latency",
        "How long Monty took to answer each kept step (ms); gaps are steps it did not answer in time.",
    )
    figure, axes = _figure()
    _lines(axes[0], seeds, "brain_latency_ms", plot, "", ".")
    axes[0].set_ylabel("ms")
    _finish(axes, seeds)
    return _save(figure, out, plot)


def comparison(seeds: dict[str, Series], statuses: dict[str, str], out: Path) -> Plot:
    """The sweep's seeds side by side: distance, energy, worst nociceptor, and steps, coloured by how each ended."""
    plot = Plot(
        "seeds.png",
        "Seeds compared",
        "Per seed: distance travelled (m), energy used (kJ), the highest nociceptor, and control steps; green succeeded, red did not.",
    )
    names = list(seeds)
    metrics: dict[str, Callable[[Series], float]] = {
        "distance (m)": lambda s: (integral(s["time"], s["base_vel.vx"]) or [0.0])[-1],
        "energy (kJ)": lambda s: (integral(s["time"], s["energy_rate"]) or [0.0])[-1] / 1000,
        "max nociceptor": lambda s: max((v for v in s["nociceptor"] if not math.isnan(v)), default=0.0),
        "steps": lambda s: max((v for v in s["step"] if not math.isnan(v)), default=0.0),
    }
    figure, grid = _pyplot().subplots(1, len(metrics), figsize=(11, 3.2), squeeze=False)
    colours = ["tab:green" if statuses.get(n) == "Succeeded" else "tab:red" for n in names]
    for axes, (label, measure) in zip(grid[0], metrics.items(), strict=True):
        values = [measure(seeds[n]) for n in names]
        axes.bar(names, values, color=colours)
        axes.set_title(label, fontsize=9)
        axes.tick_params(axis="x", labelrotation=45, labelsize=7)
        plot.points[label] = len(values)
    return _save(figure, out, plot)


def all_plots(seeds: dict[str, Series], statuses: dict[str, str], out: Path) -> list[Plot]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        velocity(seeds, out),
        pose(seeds, out),
        energy(seeds, out),
        nociceptor(seeds, out),
        latency(seeds, out),
        comparison(seeds, statuses, out),
    ]
