"""Every figure the harness draws (seaborn on matplotlib), each written to a PNG.

Figures are deterministic: the same data gives the same file, so a rebuilt report is identical.
They are drawn without pyplot (a `Figure` rendered by Agg), inside their own rc context: the
caller's backend and settings (a notebook's inline plots) are as they were. Text is plain text: a
`$` in a class or variant name is a dollar sign, never mathtext that could fail to parse.
"""

from __future__ import annotations

import functools
import io
import math
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from harness.analysis import stats
from harness.base.files import atomic_write


def drawn(draw):
    """A figure function run in its own rc context with plain text (what it or seaborn's theme
    changes is undone when it returns)."""

    @functools.wraps(draw)
    def inside(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return inside


def _subplots(*grid: int, figsize: tuple[float, float], **kwargs):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def _epochs_axis(ax, epochs) -> None:
    """Whole epochs on the x axis; a single epoch centred with its one tick (not 0.945 to 1.050)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    values = sorted(set(int(e) for e in epochs))
    if len(values) == 1:
        ax.set_xlim(values[0] - 0.5, values[0] + 0.5)
        ax.set_xticks(values)


def _marker(epochs) -> str:
    """Dots where a line has too few epochs to show (one epoch is a single point)."""
    return "o" if len(set(epochs)) <= 2 else ""


def short(name: str, width: int = 32) -> str:
    """`name` shortened in the middle to `width` characters, so an axis label fits its panel."""
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width - width // 2) :]


def _t_band(values: pd.Series) -> tuple[float, float]:
    s = stats.summarize(list(values))
    if s.n < 2:
        return s.mean, s.mean
    return s.ci_low, s.ci_high


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Render to memory, then write through the atomic writer: a killed report never leaves an empty
    PNG. A figure pyplot made (Optuna's views) is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    return atomic_write(path, buffer.getvalue())


@drawn
def run_curves(history: dict[str, list[float]], title: str, path: Path) -> Path:
    """One run's loss and accuracy per epoch, train dashed and validation solid."""
    sns.set_theme(style="whitegrid")
    fig, axes = _subplots(1, 2, figsize=(9, 3.4))
    epochs = np.arange(1, len(history["val_acc"]) + 1)
    for ax, metric, label in ((axes[0], "acc", "accuracy (%)"), (axes[1], "loss", "loss")):
        ax.plot(epochs, history[f"train_{metric}"], "--", marker=_marker(epochs), label="train")
        ax.plot(epochs, history[f"val_{metric}"], "-", marker=_marker(epochs), label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        _epochs_axis(ax, epochs)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def learning_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy and loss per epoch per variant, mean over seeds with a 95% t band;
    train curves dashed. `curves` columns: variant, seed, epoch, split, acc, loss."""
    sns.set_theme(style="whitegrid")
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    order = list(dict.fromkeys(curves["variant"]))
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))
    for ax, metric, label in ((axes[0], "acc", "accuracy (%)"), (axes[1], "loss", "loss")):
        sns.lineplot(
            data=curves,
            x="epoch",
            y=metric,
            hue="variant",
            style="split",
            hue_order=order,
            palette=palette,
            style_order=["val", "train"],
            errorbar=_t_band,
            markers=bool(_marker(curves["epoch"])),
            ax=ax,
        )
        ax.set_ylabel(label)
        _epochs_axis(ax, curves["epoch"])
    axes[0].get_legend().remove()
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def test_accuracy(points: pd.DataFrame, path: Path) -> Path:
    """Test accuracy per variant: a box over seeds with every seed as a dot. Columns: variant, seed, test_acc."""
    sns.set_theme(style="whitegrid")
    fig, ax = _subplots(figsize=(1.6 + 1.4 * points["variant"].nunique(), 3.8))
    order = list(dict.fromkeys(points["variant"]))
    sns.boxplot(data=points, x="variant", y="test_acc", order=order, color="0.9", showfliers=False, ax=ax)
    sns.stripplot(
        data=points,
        x="variant",
        y="test_acc",
        order=order,
        hue="variant",
        hue_order=order,
        size=7,
        jitter=False,
        legend=False,
        ax=ax,
    )
    ax.set_ylabel("test accuracy (%)")
    ax.set_xlabel("")
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def baseline_difference(rows: pd.DataFrame, path: Path) -> Path:
    """Paired difference from the baseline per variant with its 95% CI. Columns: variant, diff, ci_low, ci_high."""
    return forest(
        rows.rename(columns={"variant": "label"}), "test accuracy minus baseline (points, paired by seed)", path
    )


@drawn
def forest(rows: pd.DataFrame, xlabel: str, path: Path) -> Path:
    """A forest plot: one estimate per row with its 95% CI, against zero. Columns: label, diff, ci_low, ci_high."""
    sns.set_theme(style="whitegrid")
    fig, ax = _subplots(figsize=(6.5, 0.9 + 0.6 * len(rows)))
    y = np.arange(len(rows))
    low = rows["diff"] - rows["ci_low"].fillna(rows["diff"])
    high = rows["ci_high"].fillna(rows["diff"]) - rows["diff"]
    colors = sns.color_palette(n_colors=len(rows) + 1)[1:]
    ax.errorbar(rows["diff"], y, xerr=[low, high], fmt="none", ecolor="0.3", capsize=4)
    ax.scatter(rows["diff"], y, c=colors, s=50, zorder=3)
    ax.axvline(0, color="0.2", lw=1)
    ax.set_yticks(y, [short(str(label), 40) for label in rows["label"]])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def variance_bars(rows: list[tuple[str, float, float, float]], title: str, path: Path) -> Path:
    """One horizontal bar per source of variation: its standard deviation (points, the square root
    of its variance) with its interval as an error bar, clipped at 3× the largest bar (an arrow
    marks a clipped bound). Rows: (label, variance, low, high)."""

    def root(x: float) -> float:
        return math.sqrt(x) if math.isfinite(x) and x >= 0 else math.nan

    sns.set_theme(style="whitegrid")
    fig, ax = _subplots(figsize=(6.5, 1.0 + 0.5 * len(rows)))
    y = np.arange(len(rows))
    value = np.nan_to_num(np.array([root(r[1]) for r in rows]))
    top = 3.0 * float(value.max()) if value.max() > 0 else 1.0
    low = np.array([v - root(r[2]) if math.isfinite(root(r[2])) else 0.0 for v, r in zip(value, rows)])
    high = np.array([min(root(r[3]), top) - v if math.isfinite(root(r[3])) else 0.0 for v, r in zip(value, rows)])
    ax.barh(y, value, color=sns.color_palette(n_colors=max(1, len(rows)))[: len(rows)])
    ax.errorbar(value, y, xerr=[low, high], fmt="none", ecolor="0.2", capsize=4)
    clipped = [i for i, r in enumerate(rows) if math.isfinite(root(r[3])) and root(r[3]) > top]
    ax.scatter([top] * len(clipped), clipped, marker=">", color="0.2", zorder=3)
    ax.set_xlim(0, top * 1.05)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("sd of test accuracy (points), with its interval")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def sequential_intervals(rows: list[dict], margin: float, path: Path) -> Path:
    """Seeds on demand: each variant's paired difference after each round with its repeated
    confidence interval. Rows: variant, seeds (pairs), diff, low, high (inf where no error is spent yet)."""
    sns.set_theme(style="whitegrid")
    fig, ax = _subplots(figsize=(7.5, 3.8))
    names = list(dict.fromkeys(r["variant"] for r in rows))
    colors = dict(zip(names, sns.color_palette(n_colors=len(names) + 1)[1:]))
    means = [r["diff"] for r in rows]
    for i, name in enumerate(names):
        mine = [r for r in rows if r["variant"] == name]
        x = np.array([r["seeds"] for r in mine], dtype=float) + 0.12 * (i - (len(names) - 1) / 2)
        y = np.array([r["diff"] for r in mine])
        finite = np.array([math.isfinite(r["low"]) and math.isfinite(r["high"]) for r in mine])
        low = np.where(finite, y - np.array([r["low"] for r in mine]), 0.0)
        high = np.where(finite, np.array([r["high"] for r in mine]) - y, 0.0)
        ax.errorbar(x, y, yerr=[low, high], fmt="o-", color=colors[name], capsize=3, label=name)
    for level, style in ((0.0, "-"), (margin, "--"), (-margin, "--")):
        ax.axhline(level, color="0.3", lw=1, ls=style)
    span = max(max(means) - min(means), 2 * margin, 1.0)
    ax.set_ylim(min(min(means), -margin) - span, max(max(means), margin) + span)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("pairs of seeds so far")
    ax.set_ylabel("Δ test accuracy (points)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def interaction(means: dict[tuple[bool, bool], float], a: str, b: str, path: Path) -> Path:
    """Mean test accuracy without and with `a` (x axis), one line without and one with `b`:
    parallel lines mean no interaction."""
    sns.set_theme(style="whitegrid")
    fig, ax = _subplots(figsize=(5.2, 3.6))
    for has_b, style in ((False, "o--"), (True, "s-")):
        ax.plot(
            [0, 1], [means[(False, has_b)], means[(True, has_b)]], style, label=f"with {b}" if has_b else f"without {b}"
        )
    ax.set_xticks([0, 1], [f"without {a}", f"with {a}"])
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def confusion_matrices(matrices: dict[str, np.ndarray], classes: tuple[str, ...], path: Path) -> Path:
    """One heatmap per variant: test-set confusion matrix summed over seeds, rows normalised to %."""
    sns.set_theme(style="white")
    n = len(matrices)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, figsize=(6.2 * cols, 5.4 * rows), squeeze=False)
    for ax, (variant, cm) in zip(axes.flat, matrices.items()):
        pct = 100.0 * cm / np.maximum(cm.sum(1, keepdims=True), 1)
        few = len(classes) <= 20  # beyond that, cell numbers and class names would not be legible
        sns.heatmap(
            pct,
            annot=few,
            fmt=".0f",
            cmap="Blues",
            vmin=0,
            vmax=100,
            cbar=not few,
            square=True,
            xticklabels=list(classes) if few else False,
            yticklabels=list(classes) if few else False,
            annot_kws={"size": 7},
            ax=ax,
        )
        ax.set_title(f"{variant} (n={int(cm.sum())} predictions)")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


@drawn
def evidence(panel: dict, path: Path) -> Path:
    """One comparison's evidence, four panels: the paired difference of each seed (a dot on its
    seed's stem), the interval that decided the verdict against zero and ±margin, both variants'
    learning curves, and each one's seed spread beside its test-set floor. `panel` keys: baseline,
    variant, seeds, diffs, delta, low, high, sim_low, sim_high, interval, verdict, margin, curves
    (the learning-curve rows of the two variants), spread {variant: (seed sd, floor)}."""
    sns.set_theme(style="whitegrid")
    fig, axes = _subplots(2, 2, figsize=(10, 6.4))
    (seeds_ax, interval_ax), (curve_ax, noise_ax) = axes
    base, name, margin = panel["baseline"], panel["variant"], panel["margin"]
    colors = dict(zip((base, name), sns.color_palette(n_colors=2)))

    x = np.arange(len(panel["seeds"]))
    seeds_ax.vlines(x, 0, panel["diffs"], color="0.55", lw=1.5)
    seeds_ax.scatter(x, panel["diffs"], color=colors[name], s=45, zorder=3)
    for level, style in ((0.0, "-"), (margin, "--"), (-margin, "--")):
        seeds_ax.axhline(level, color="0.3", lw=1, ls=style)
    seeds_ax.set_xticks(x, [str(s) for s in panel["seeds"]], rotation=45 if len(x) > 8 else 0)
    seeds_ax.set_xlabel("seed")
    seeds_ax.set_ylabel(f"{short(name, 26)} −\n{short(base, 26)} (points)")
    seeds_ax.set_title("paired difference on each seed", fontsize="medium")

    low, high, delta = panel["low"], panel["high"], panel["delta"]
    finite = [v for v in (low, high, panel["sim_low"], panel["sim_high"], delta, margin, -margin) if math.isfinite(v)]
    span = max(finite) - min(finite) or 1.0
    left, right = min(finite) - 0.15 * span, max(finite) + 0.15 * span

    def clip(v: float) -> float:
        return left if v == -math.inf else right if v == math.inf else v

    if math.isfinite(panel["sim_low"]) or math.isinf(panel["sim_low"]):
        interval_ax.plot(
            [clip(panel["sim_low"]), clip(panel["sim_high"])], [0.75, 0.75], color="0.6", lw=2, label="simultaneous"
        )
    if not math.isnan(low):
        interval_ax.plot(
            [clip(low), clip(high)], [1, 1], color=colors[name], lw=4, solid_capstyle="butt", label="deciding"
        )
    interval_ax.scatter([delta], [1], color="black", s=40, zorder=3)
    for level, style in ((0.0, "-"), (margin, "--"), (-margin, "--")):
        interval_ax.axvline(level, color="0.3", lw=1, ls=style)
    interval_ax.set_xlim(left, right)
    interval_ax.set_ylim(0.4, 1.3)
    interval_ax.set_yticks([])
    interval_ax.set_xlabel("Δ test accuracy (points)")
    interval_ax.set_title(f"{panel['verdict']}: Δ {delta:+.2f}, {panel['interval']}", fontsize="medium")
    if interval_ax.get_legend_handles_labels()[0]:
        interval_ax.legend(loc="lower right", fontsize="small")

    curves = panel["curves"]
    for variant in (base, name):
        for split, style in (("val", "-"), ("train", "--")):
            mine = curves[(curves["variant"] == variant) & (curves["split"] == split)]
            if len(mine):
                mean = mine.groupby("epoch")["acc"].mean()
                curve_ax.plot(
                    mean.index,
                    mean.values,
                    style,
                    marker=_marker(curves["epoch"]),
                    color=colors[variant],
                    label=f"{short(variant)} {split}",
                )
    _epochs_axis(curve_ax, curves["epoch"] if len(curves) else [1])
    curve_ax.set_xlabel("epoch")
    curve_ax.set_ylabel("accuracy (%), mean over seeds")
    curve_ax.set_title("learning curves", fontsize="medium")
    if len(curves):
        curve_ax.legend(fontsize="small")

    spread = panel["spread"]
    groups = list(spread)
    gx = np.arange(len(groups))
    noise_ax.bar(
        gx - 0.2,
        [spread[g][0] for g in groups],
        width=0.4,
        color=[colors.get(g, "0.5") for g in groups],
        label="seed sd",
    )
    noise_ax.bar(
        gx + 0.2, [spread[g][1] for g in groups], width=0.4, color="0.75", label="test-set floor (binomial sd)"
    )
    noise_ax.set_xticks(gx, [short(g, 24) for g in groups])
    # room for the legend above the bars
    noise_ax.set_ylim(0, 1.4 * max([v for g in groups for v in spread[g]] + [1e-9]))
    noise_ax.set_ylabel("points")
    noise_ax.set_title("seed spread and test-set floor", fontsize="medium")
    noise_ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


@drawn
def reliability(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> Path:
    """Accuracy against confidence per confidence bin, one line per variant (its seeds' images
    pooled), beside the diagonal of perfect calibration; the right panel: the share of images per bin.
    `curves`: variant -> (count, mean confidence, accuracy) per bin (harness/analysis/images.py)."""
    sns.set_theme(style="whitegrid")
    fig, axes = _subplots(1, 2, figsize=(9.5, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    axes[0].plot([0, 1], [0, 1], ":", color="0.5", label="perfect calibration")
    bins = len(next(iter(curves.values()))[0])
    edges = np.arange(bins) / bins
    width = 0.9 / (bins * len(curves))
    for i, (name, (counts, conf, acc)) in enumerate(curves.items()):
        used = counts > 0
        axes[0].plot(conf[used], acc[used], "o-", markersize=4, label=short(name))
        axes[1].bar(
            edges + (i + 0.5) * width, counts / max(counts.sum(), 1), width=width, align="edge", label=short(name)
        )
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, 1)
    axes[0].set_xlabel("confidence (top class probability)")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize="small", loc="upper left")
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("confidence")
    axes[1].set_ylabel("share of images")
    fig.tight_layout()
    return save_figure(fig, path)
