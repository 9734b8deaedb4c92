"""What a `run` records on its MLflow experiment so that `report`, `plan` and `promote` can rebuild
its analysis from the store alone: the parents it used, its design, its `[analysis]` settings and
its seeds-on-demand design (JSON in the tags of harness/tracking/names.py), and reading them back."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from harness.settings import checks, designs
from harness.settings.analysis import SEQUENTIAL_RULE, Analysis, Sequential
from harness.settings.designs import Design
from harness.tracking.names import (
    ANALYSIS_TAG,
    DESIGN_TAG,
    REPORT_PARENTS_TAG,
    SEQUENTIAL_CHANGES_TAG,
    SEQUENTIAL_FROZEN_TAG,
    SEQUENTIAL_TAG,
)


@dataclass(frozen=True)
class SeedsOnDemand:
    """The seeds-on-demand design of the last `run`, as recorded."""

    plan: Sequential
    first_seed: int
    baseline: str
    variants: tuple[str, ...]  # compared with the baseline
    # frozen settings changed with --redesign after the design started ("max_seeds 12 → 20")
    changes: tuple[str, ...] = ()
    rule: int = SEQUENTIAL_RULE  # the seeds-on-demand rule the design started under (analysis/sequential.py)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The candidate seeds, in the order rounds take them."""
        return tuple(range(self.first_seed, self.first_seed + self.plan.max_seeds))


def of_run(cfg, parent_ids: list[str]) -> dict[str, str]:
    """The tags a `run` of `cfg` (an ExperimentConfig) sets on its experiment, given the parent runs it used."""
    return {
        REPORT_PARENTS_TAG: ",".join(dict.fromkeys(p for p in parent_ids if p)),
        DESIGN_TAG: designs.to_tag(cfg.design),
        ANALYSIS_TAG: analysis_tag(cfg.analysis),
        SEQUENTIAL_TAG: sequential_tag(cfg),
    }


def analysis_tag(analysis: Analysis) -> str:
    """The [analysis] settings as recorded on the MLflow experiment (JSON)."""
    return json.dumps({"margin": analysis.margin, "test": analysis.test, "alpha": analysis.alpha})


def sequential_tag(cfg) -> str:
    """The seeds-on-demand settings of a `run`, as recorded on the MLflow experiment ('' for fixed seeds)."""
    if not cfg.sequential:
        return ""
    return json.dumps(
        {
            "min_seeds": cfg.sequential.min_seeds,
            "max_seeds": cfg.sequential.max_seeds,
            "first_seed": cfg.seeds[0],
            "baseline": cfg.baseline,
            "variants": [v for v in cfg.variants if v != cfg.baseline],
        }
    )


def _foreign(tag: str, text: str, error: Exception, instead: str) -> None:
    """One line on stderr for a tag the harness did not write as it stands (edited by hand, say)."""
    print(
        f"warning: experiment tag {tag} = {text[:80]!r} is not what the harness writes ({type(error).__name__}: {error}); {instead}",
        file=sys.stderr,
    )


def design_of(tags: dict[str, str]) -> Design:
    """The design the last `run` recorded on the experiment (a list design when none, or when the tag is not the harness's)."""
    try:
        return designs.from_tag(tags.get(DESIGN_TAG, ""))
    except Exception as e:  # noqa: BLE001 - any edit of the tag: say so and read the runs as a list of variants
        _foreign(DESIGN_TAG, tags.get(DESIGN_TAG, ""), e, "the runs are read as a list of variants")
        return Design()


def analysis_of(tags: dict[str, str]) -> Analysis:
    """The [analysis] settings the last `run` recorded (the defaults when none, or when the tag is not the harness's)."""
    text = tags.get(ANALYSIS_TAG, "") or "{}"
    try:
        values = json.loads(text)
        analysis = Analysis(**values)
        checks.build(Analysis, values, "analysis")  # each value as the experiment file's would be checked
        return analysis
    except Exception as e:  # noqa: BLE001 - UsageError, ValueError, TypeError: say so and use the defaults
        _foreign(ANALYSIS_TAG, text, e, "the default [analysis] settings are used")
        return Analysis()


def sequential_of(tags: dict[str, str]) -> SeedsOnDemand | None:
    """The seeds-on-demand design the last `run` recorded; None for fixed seeds (or a tag that is not the harness's)."""
    text = tags.get(SEQUENTIAL_TAG, "")
    if not text:
        return None
    try:
        s = json.loads(text)
        changes = tuple(
            f"{c.get('setting')} {c.get('from')} → {c.get('to')}" for c in redesigns(tags) if isinstance(c, dict)
        )
        return SeedsOnDemand(
            Sequential(int(s["min_seeds"]), int(s["max_seeds"])),
            int(s["first_seed"]),
            str(s["baseline"]),
            tuple(map(str, s["variants"])),
            changes,
            rule_of(tags),
        )
    except Exception as e:  # noqa: BLE001 - any edit of the tag
        _foreign(SEQUENTIAL_TAG, text, e, "the runs are reported as fixed seeds")
        return None


# The settings of a seeds-on-demand design that its past rounds were decided under, by the name
# the experiment file gives them: changing one after results exist replays those rounds with other
# boundaries (raising max_seeds after an inconclusive end lifts the false-verdict rate to ~7.8%).
FROZEN = (
    "min_seeds",
    "max_seeds",
    "first seed",
    "analysis.margin",
    "analysis.alpha",
    "analysis.test",
    "baseline",
    "variants",
)


def rule_of(tags: dict[str, str]) -> int:
    """The seeds-on-demand rule of the experiment's design: the one recorded at its round 1; 1 for a
    design started before rules were recorded; the current rule for one not started yet."""
    before = _started_with(tags)
    if before is None:
        return 1
    if not before:
        return SEQUENTIAL_RULE
    rule = before.get("rule", 1)
    return rule if isinstance(rule, int) and 1 <= rule <= SEQUENTIAL_RULE else 1


def design_record(cfg, rule: int = SEQUENTIAL_RULE) -> dict:
    """The frozen settings of a seeds-on-demand `run` of `cfg`, with the rule its rounds are decided
    under (carried, never compared: a design keeps the rule it started with)."""
    # Holm's m
    return {
        "rule": rule,
        "min_seeds": cfg.sequential.min_seeds,
        "max_seeds": cfg.sequential.max_seeds,
        "first seed": cfg.seeds[0],
        "analysis.margin": cfg.analysis.margin,
        "analysis.alpha": cfg.analysis.alpha,
        "analysis.test": cfg.analysis.test,
        "baseline": cfg.baseline,
        "variants": ",".join(sorted(v for v in cfg.variants if v != cfg.baseline)),
    }


def design_changes(tags: dict[str, str], cfg) -> list[tuple[str, object, object]]:
    """(setting, stored value, this command's value) for each frozen setting this command changes;
    empty when the experiment has no stored design or the same one."""
    before = _started_with(tags)
    if before is None:
        return []
    now = design_record(cfg)
    return [(k, before.get(k), now[k]) for k in FROZEN if k in before and before[k] != now[k]]


def _started_with(tags: dict[str, str]) -> dict | None:
    """The frozen settings the experiment's seeds-on-demand design started with ({} for none), None
    when its tags cannot be read."""
    try:
        return json.loads(tags[SEQUENTIAL_FROZEN_TAG]) if tags.get(SEQUENTIAL_FROZEN_TAG) else _recorded_before(tags)
    except (ValueError, TypeError, KeyError):
        return None


def _recorded_before(tags: dict[str, str]) -> dict:
    """The frozen settings of a design started before they were recorded on their own: from the
    seeds-on-demand and [analysis] tags its last `run` left ({} for none)."""
    if not tags.get(SEQUENTIAL_TAG):
        return {}
    s, a = json.loads(tags[SEQUENTIAL_TAG]), json.loads(tags.get(ANALYSIS_TAG) or "{}")
    out = {
        "min_seeds": s["min_seeds"],
        "max_seeds": s["max_seeds"],
        "first seed": s["first_seed"],
        "baseline": s["baseline"],
        "variants": ",".join(sorted(s["variants"])),
    }
    out.update({f"analysis.{k}": a[k] for k in ("margin", "alpha", "test") if k in a})
    return out


def started_sequential(tags: dict[str, str]) -> str:
    """How the experiment's seeds-on-demand design started ("3 to 12 seeds, first seed 2021"), or ''
    when it never ran with seeds on demand."""
    before = _started_with(tags)
    if not before:
        return ""
    return f"{before.get('min_seeds')} to {before.get('max_seeds')} seeds, first seed {before.get('first seed')}"


def fixed_after_sequential(tags: dict[str, str], seeds: str) -> dict[str, str]:
    """The change log entry of a fixed-seed `run --redesign` of a seeds-on-demand experiment."""
    log = redesigns(tags) + [{"setting": "seeds", "from": "auto", "to": seeds}]
    frozen = tags.get(SEQUENTIAL_FROZEN_TAG) or json.dumps(_recorded_before(tags))  # carried: the report reads it
    return {SEQUENTIAL_FROZEN_TAG: frozen, SEQUENTIAL_CHANGES_TAG: json.dumps(log)}


def fixed_after(tags: dict[str, str]) -> str:
    """The fixed seeds a `run --redesign` analysed a seeds-on-demand experiment with, when its last
    `run` used fixed seeds ('' otherwise): what the report must disclose."""
    if tags.get(SEQUENTIAL_TAG) or not started_sequential(tags):
        return ""
    fixed = [c for c in redesigns(tags) if c.get("setting") == "seeds"]
    return str(fixed[-1].get("to", "")) if fixed else "fixed seeds"


def freeze(tags: dict[str, str], cfg, changes: list[tuple[str, object, object]]) -> dict[str, str]:
    """The tags that record the design when round 1 starts, and every change made with --redesign
    (the earlier ones carried over, so the report at the end of `run` says what `report` would)."""
    out = {SEQUENTIAL_FROZEN_TAG: json.dumps(design_record(cfg, rule_of(tags)))}
    log = redesigns(tags) + [{"setting": k, "from": a, "to": b} for k, a, b in changes]
    if log:
        out[SEQUENTIAL_CHANGES_TAG] = json.dumps(log)
    return out


def redesigns(tags: dict[str, str]) -> list[dict]:
    """The frozen settings changed with --redesign after the design started, oldest first."""
    try:
        log = json.loads(tags.get(SEQUENTIAL_CHANGES_TAG, "") or "[]")
    except ValueError:
        return []
    return log if isinstance(log, list) else []
