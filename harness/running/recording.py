"""Recording a finished run: its test-set results (harness/training/results.py) as final metrics,
logged once even after a restart, and its artifacts (configuration, confusion matrix, per-class
scores, per-image predictions, weights, plots, the MLflow model), named in harness/tracking/names.py."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from harness.data.loading import Loaded
from harness.settings import config
from harness.settings.config import ExperimentConfig, RunSpec
from harness.tracking import models, names
from harness.training import engine, evaluation, results


def record(tracker, run_id: str, cfg: ExperimentConfig, spec: RunSpec, data: Loaded, model: nn.Module,
           result: engine.Result) -> dict[str, float]:
    """Evaluate on the test set, log the final metrics (once, also after a restart) and the artifacts."""
    t, classes = data.tensors, data.source.dataset.classes
    tested = results.test(model, result, t.x_test, t.y_test, classes, spec.train, cfg.runtime)
    if "test_acc" not in tracker.runs_metrics(run_id):  # a restart after the final log logs nothing twice
        tracker.log_metrics(run_id, tested.metrics)
    from harness.report import plots  # matplotlib and seaborn load when a run first records, not with the runner

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / names.CONFIG).write_text(config.to_toml(cfg, {"run": spec.flat()}))
        evaluation.write_confusion_csv(tested.confusion, classes, folder / names.CONFUSION)
        evaluation.write_per_class_csv(tested.scores, classes, folder / names.PER_CLASS)
        results.write_predictions(folder / names.PREDICTIONS, t.y_test, tested.predicted, tested.predicted_last)
        torch.save({"last": model.state_dict(), "selected": result.selected_state, "selected_epoch": result.selected_epoch},
                   folder / names.WEIGHTS)
        rows = [names.epoch_metrics(s) for s in result.history]
        curves = {k: [r[k] for r in rows] for k in names.EPOCH_METRICS}
        plots.run_curves(curves, f"{spec.variant}, seed {spec.seed}", folder / names.CURVES_PLOT)
        plots.confusion_matrices({f"{spec.variant} seed {spec.seed}": tested.confusion}, classes, folder / names.CONFUSION_PLOT)
        tracker.log_artifacts(run_id, folder)
    models.log_model(tracker.client, run_id, tested.selected, engine.to_float(t.x_test[:2]), user_code(spec))
    return tested.metrics


def user_code(spec: RunSpec) -> list[str]:
    """The files of the run's user components (its model may pickle classes defined in them)."""
    import variants

    base = spec.variant.split("@")[0]
    return sorted({c.path for c in variants.get(base).components if not c.shipped and c.path})
