"""Tuning's search spaces: the `[search.<variant>]` tables of an experiment, read and checked.
Each end of each range must itself be an allowed setting of the variant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.base.errors import UsageError
from harness.data import datasets
from harness.settings import checks, config
from harness.settings.config import ExperimentConfig

KEYS = {"low", "high", "log", "int", "choices"}


@dataclass(frozen=True)
class SearchParam:
    """One dimension of a search space: a float or int range (optionally log-scaled) or choices."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple = ()


def space(cfg: ExperimentConfig, variant: str) -> list[SearchParam]:
    """The variant's search space as declared in `[search.<variant>]` (call `check` first)."""
    out = []
    for name, spec in sorted(cfg.search.get(variant, {}).items()):
        if "choices" in spec:
            out.append(SearchParam(name, choices=tuple(spec["choices"])))
        else:
            integer = bool(spec.get("int", False))
            low, high = (int(spec["low"]), int(spec["high"])) if integer else (float(spec["low"]), float(spec["high"]))
            out.append(SearchParam(name, low, high, bool(spec.get("log", False)), integer))
    return out


def check(cfg: ExperimentConfig) -> None:
    """Type- and range-check every search space of the experiment."""
    import harness.variants as registry

    for variant, table in cfg.search.items():
        where = f"search.{variant}"
        if variant not in registry.names():
            raise UsageError(f"{where}: {registry.unknown_message(variant)}")
        if not isinstance(table, dict) or not table:
            raise UsageError(
                f"{where}: expected a non-empty table of parameter ranges, e.g. lr = {{low = 1e-4, high = 1e-2, log = true}}"
            )
        for name, spec in table.items():
            for value in _ends(f"{where}.{name}", spec):
                _check_end(cfg, variant, name, value, f"{where}.{name}")


def _ends(key: str, spec) -> list:
    """The values a dimension can take at its ends (or all its choices), after checking its form."""
    if not isinstance(spec, dict):
        raise UsageError(
            f"{key}: expected a table such as {{low = 0.0, high = 0.8}} or {{choices = [...]}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise UsageError(f"{key}.{unknown[0]}: unknown key; allowed: {', '.join(sorted(KEYS))}")
    if "choices" in spec:
        if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
            raise UsageError(f"{key}: choices must be a non-empty list and stand alone, got {spec!r}")
        return spec["choices"]
    if "low" not in spec or "high" not in spec:
        raise UsageError(f"{key}: a range needs both low and high, got {spec!r}")
    kind = int if spec.get("int") is True else float
    low = checks.check_value(f"{key}.low", spec["low"], kind)
    high = checks.check_value(f"{key}.high", spec["high"], kind)
    for flag in ("log", "int"):
        if flag in spec:
            checks.check_value(f"{key}.{flag}", spec[flag], bool)
    if not low < high:
        raise UsageError(f"{key}: low ({low}) must be below high ({high})")
    if spec.get("log") and low <= 0:
        raise UsageError(f"{key}: a log-uniform range needs low > 0, got {low}")
    return [low, high]


def _check_end(cfg: ExperimentConfig, variant: str, name: str, value, key: str) -> None:
    import harness.variants as registry

    probe = dataclasses.replace(
        cfg, params={**cfg.params, variant: {**cfg.params.get(variant, {}), name: value}}, search={}
    )
    dataset = datasets.get(cfg.data.dataset, cfg.data.image_size)
    try:
        spec = config.resolve(probe, variant, probe.seeds[0])
        registry.get(variant).build(dataset.image_shape, dataset.num_classes, spec.model_params)
    except (UsageError, ValueError, TypeError) as e:
        raise UsageError(f"{key}: {value!r} is outside what the setting allows ({e})") from None
