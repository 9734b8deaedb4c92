"""`export`: one of the report's tables (harness/report/tables.py) as CSV or JSON (tidy: one row
per record, numbers unrounded, missing values empty or null, for pandas) or as a LaTeX table for a
paper (booktabs rules, mean ± sd, the verdict, names escaped)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from harness.base import escaping
from harness.base.errors import UsageError, one_of
from harness.base.files import atomic_write
from harness.settings import designs

if TYPE_CHECKING:  # the tables are DataFrames; checking a command's arguments needs no pandas
    import pandas as pd

Format = Literal["csv", "json", "latex"]
# the report's tables (harness/report/tables.py); compact: the comparison as a paper prints it (Δ [CI], verdict)
Table = Literal["comparison", "compact", "statistics", "effects", "runs"]
TABLES = get_args(Table)


def check(fmt: str, table: str, where: tuple[str, str] = ("--format", "--table")) -> None:
    """Refuse a format or a table that does not exist, before the store is read."""
    one_of(where[0], fmt, Format)
    one_of(where[1], table, Table)


def check_design(experiment: str, design: designs.Design, table: str) -> None:
    """`effects` of a design without effects is refused in one line (before the runs are read)."""
    if table == "effects" and design.kind not in designs.CELLS:
        raise UsageError(
            f"table effects: experiment {experiment!r} has a {design.kind} design; effects come from a factorial "
            "or leave-one-out design"
        )


def render(df: pd.DataFrame, fmt: str, table: str, experiment: str, name_in_caption: bool = False) -> str:
    """The table as text; a LaTeX caption names the experiment only when `name_in_caption` (the
    store's name is rarely what a paper calls the study)."""
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        records = [{k: _plain(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
        return json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    return latex(df, table, experiment, name_in_caption)


def write(text: str, out: Path, where: str = "--out") -> Path:
    """Write an export to `out` (checked first with base.files.check_target), whole or not at all."""
    try:
        return atomic_write(out, text)
    except OSError as e:
        raise UsageError(f"{where}: {e}") from None


def _plain(v):
    """A JSON value: NaN, infinities and None as null, numpy scalars as Python numbers."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def _f(v, digits: int = 2, signed: bool = False) -> str:
    if _missing(v):
        return "--"
    return f"${v:+.{digits}f}$" if signed else f"${v:.{digits}f}$"


def _p(v) -> str:
    if _missing(v):
        return "--"
    return "$<0.001$" if v < 0.001 else f"${v:.3f}$"


def _interval(low, high) -> str:
    return "--" if _missing(low) or _missing(high) else f"[${low:+.2f}$, ${high:+.2f}$]"


def latex(df: pd.DataFrame, table: str, experiment: str, name_in_caption: bool = False) -> str:
    """A complete `table` float: caption, label, booktabs rules (needs \\usepackage{booktabs,graphicx})."""
    if table == "compact":
        head = ["Variant", r"$\Delta$ test accuracy (points) [95\% CI]", "Verdict"]
        align = "lrl"
        rows = [
            [
                escaping.latex(r.variant),
                "--"
                if _missing(r.diff_vs_baseline)
                else f"{_f(r.diff_vs_baseline, signed=True)} {_interval(r.ci_low, r.ci_high)}",
                escaping.latex(r.verdict),
            ]
            for r in df.itertuples()
        ]
        caption = f"{experiment}: each variant's paired difference in test accuracy from the baseline, with its verdict"
    elif table == "comparison":
        head = [
            "Variant",
            "Seeds",
            r"Test accuracy (\%)",
            r"$\Delta$ vs.\ baseline",
            r"95\% CI",
            r"$p$ (Holm)",
            "Verdict",
        ]
        align = "lrrrcrl"
        rows = [
            [
                escaping.latex(r.variant),
                str(r.seeds),
                "--"
                if _missing(r.test_acc_mean)
                else (
                    f"${r.test_acc_mean:.2f}$"
                    if _missing(r.test_acc_sd)
                    else f"${r.test_acc_mean:.2f} \\pm {r.test_acc_sd:.2f}$"
                ),
                _f(r.diff_vs_baseline, signed=True),
                _interval(r.ci_low, r.ci_high),
                _p(r.p_holm),
                escaping.latex(r.verdict),
            ]
            for r in df.itertuples()
        ]
        caption = f"{experiment}: test accuracy over seeds (mean $\\pm$ sd) and each variant's paired difference from the baseline"
    elif table == "effects":
        head = ["Effect", "Kind", "Pairs", "Estimate (points)", r"95\% CI", r"$p$ (Holm)", "Verdict"]
        align = "llrrcrl"
        rows = [
            [
                escaping.latex(r.effect),
                escaping.latex(r.kind),
                str(r.pairs),
                _f(r.estimate, signed=True),
                _interval(r.ci_low, r.ci_high),
                _p(r.p_holm),
                escaping.latex(r.verdict),
            ]
            for r in df.itertuples()
        ]
        caption = f"{experiment}: the design's effects on test accuracy (points)"
    elif table == "statistics":
        head = [
            "Variant",
            "Pairs",
            r"$\bar d$",
            r"$s_d$",
            r"95\% CI",
            r"$p_t$",
            r"$p_{\mathrm{perm}}$",
            r"$p$ (Holm)",
            "$g$",
            "Verdict",
        ]
        align = "lrrrcrrrrl"
        rows = [
            [
                escaping.latex(r.variant),
                "--" if _missing(r.pairs) else str(int(r.pairs)),
                _f(r.diff_mean, signed=True),
                _f(r.diff_sd),
                _interval(r.ci_low, r.ci_high),
                _p(r.t_p),
                _p(r.permutation_p),
                _p(r.p_holm),
                _f(r.hedges_g),
                escaping.latex(r.verdict),
            ]
            for r in df.itertuples()
        ]
        caption = f"{experiment}: paired tests of each variant against the baseline (differences in points)"
    else:  # runs
        head = ["Variant", "Seed", "Status", r"Test acc.\ (\%)", r"Best val.\ acc.\ (\%)"]
        align = "lrlrr"
        rows = [
            [escaping.latex(r.variant), str(r.seed), escaping.latex(r.status), _f(r.test_acc), _f(r.best_val_acc)]
            for r in df.itertuples()
        ]
        caption = f"{experiment}: every run"
    lines = [
        r"% harness export; needs \usepackage{booktabs,graphicx}",
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{_caption(caption, name_in_caption)}}}",
        f"\\label{{tab:{_label(experiment)}-{table}}}",
        r"% shrunk to the line's width when it is wider (a plain article's \linewidth), else as it is",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        f"\\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}%", "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _caption(text: str, name_in_caption: bool) -> str:
    """The caption, with the experiment's name (escaped) only when asked; the rest is LaTeX already."""
    name, _, rest = text.partition(": ")
    return f"{escaping.latex(name)}: {rest}" if name_in_caption else rest[:1].upper() + rest[1:] + "."


def _label(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in name)
