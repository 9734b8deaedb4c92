"""harness: one command for a CNN ablation study (README.md; the map of the code: docs/architecture.md).

This module is the public surface: what a user, a notebook or a plugin may import. Everything
under the layer packages (harness.base … harness.cli) is internal and may change. Names load on
first use, so `import harness` (and `python -m harness list`) stays cheap.

- Components: `register`, `Change` (a component is a function returning a `Change`).
- Datasets: `Dataset`, `register_dataset`.
- Settings: `load_experiment`, `ExperimentConfig`, `TrainSettings`, `Runtime`, `Analysis`.
- Results: `read_runs`, `SeedRun`, `build_report`.
- Notebooks and scripts: `run` (train and report, as `python -m harness run`), `tune` (an Optuna
  search, as `python -m harness tune`), `load` (an experiment
  in the store), `Study` (what both return: DataFrames, exports, the report inline in Jupyter).
- Errors: `UsageError` (bad input, with a one-line message naming the setting), `RunsFailed`
  (`run` ended where the CLI exits 1; it carries the `Study`).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "register": "harness.variants.registry",
    "Change": "harness.variants.registry",
    "Dataset": "harness.data.datasets",
    "register_dataset": "harness.data.datasets",
    "load_experiment": "harness.settings.experiment_file",
    "ExperimentConfig": "harness.settings.config",
    "TrainSettings": "harness.training.settings",
    "Runtime": "harness.training.settings",
    "Analysis": "harness.settings.analysis",
    "read_runs": "harness.tracking.readback",
    "SeedRun": "harness.tracking.readback",
    "build_report": ("harness.report.markdown", "build"),
    "UsageError": "harness.base.errors",
    "run": "harness.api.study",
    "tune": "harness.api.study",
    "RunsFailed": "harness.api.study",
    "load": "harness.api.study",
    "Study": "harness.api.study",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}; its public names: {', '.join(__all__)}")
    module, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
