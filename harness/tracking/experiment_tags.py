"""What a `run` records on its MLflow experiment so that `report`, `plan` and `promote` can rebuild
its analysis from the store alone: the parents it used, its design, its `[analysis]` settings and
its seeds-on-demand design (JSON in the tags of harness/tracking/names.py), and reading them back."""
from __future__ import annotations

import json
from dataclasses import dataclass

from harness.settings import designs
from harness.settings.analysis import Analysis, Sequential
from harness.settings.designs import Design
from harness.tracking.names import ANALYSIS_TAG, DESIGN_TAG, REPORT_PARENTS_TAG, SEQUENTIAL_TAG


@dataclass(frozen=True)
class SeedsOnDemand:
    """The seeds-on-demand design of the last `run`, as recorded."""

    plan: Sequential
    first_seed: int
    baseline: str
    variants: tuple[str, ...]  # compared with the baseline

    @property
    def seeds(self) -> tuple[int, ...]:
        """The candidate seeds, in the order rounds take them."""
        return tuple(range(self.first_seed, self.first_seed + self.plan.max_seeds))


def of_run(cfg, parent_ids: list[str]) -> dict[str, str]:
    """The tags a `run` of `cfg` (an ExperimentConfig) sets on its experiment, given the parent runs it used."""
    return {REPORT_PARENTS_TAG: ",".join(dict.fromkeys(p for p in parent_ids if p)), DESIGN_TAG: designs.to_tag(cfg.design),
            ANALYSIS_TAG: analysis_tag(cfg.analysis), SEQUENTIAL_TAG: sequential_tag(cfg)}


def analysis_tag(analysis: Analysis) -> str:
    """The [analysis] settings as recorded on the MLflow experiment (JSON)."""
    return json.dumps({"margin": analysis.margin, "test": analysis.test, "alpha": analysis.alpha})


def sequential_tag(cfg) -> str:
    """The seeds-on-demand settings of a `run`, as recorded on the MLflow experiment ('' for fixed seeds)."""
    if not cfg.sequential:
        return ""
    return json.dumps({"min_seeds": cfg.sequential.min_seeds, "max_seeds": cfg.sequential.max_seeds, "first_seed": cfg.seeds[0],
                       "baseline": cfg.baseline, "variants": [v for v in cfg.variants if v != cfg.baseline]})


def design_of(tags: dict[str, str]) -> Design:
    """The design the last `run` recorded on the experiment (a list design when none)."""
    return designs.from_tag(tags.get(DESIGN_TAG, ""))


def analysis_of(tags: dict[str, str]) -> Analysis:
    """The [analysis] settings the last `run` recorded (the defaults when none)."""
    return Analysis(**json.loads(tags.get(ANALYSIS_TAG, "") or "{}"))


def sequential_of(tags: dict[str, str]) -> SeedsOnDemand | None:
    """The seeds-on-demand design the last `run` recorded; None for fixed seeds."""
    text = tags.get(SEQUENTIAL_TAG, "")
    if not text:
        return None
    s = json.loads(text)
    return SeedsOnDemand(Sequential(s["min_seeds"], s["max_seeds"]), s["first_seed"], s["baseline"], tuple(s["variants"]))
