"""Recording a finished run: its test-set results (harness/training/results.py) as final metrics,
logged once even after a restart, and its artifacts (configuration, confusion matrix, per-class
scores, per-image predictions, weights, plots, the MLflow model), named in harness/tracking/names.py.

With `train.run_figures = true`, a run's two figures (its learning curves and confusion matrix,
views of what it logged) are PNG artifacts too. They take longer to draw than the rest of its
record (about 0.45 s of CPU here, more than all its other bookkeeping), so they are off by default:
MLflow's UI charts the logged metrics itself and the report draws its own figures. When on, one
background thread draws them while the next unit trains, and the runner logs them to their runs as they are done and
waits for the last ones before the command ends (`drain`). A SIGKILL in that second loses them;
nothing they show is lost (the metrics and confusion.csv are logged first, and the report draws its
own figures from the store)."""

from __future__ import annotations

import functools
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from harness.base import credentials
from harness.data.loading import Loaded
from harness.settings import config
from harness.settings.config import ExperimentConfig, RunSpec
from harness.tracking import models, names
from harness.training import engine, evaluation, results


def record(
    tracker,
    run_id: str,
    cfg: ExperimentConfig,
    spec: RunSpec,
    data: Loaded,
    model: nn.Module,
    result: engine.Result,
    resumed: bool = True,
) -> dict[str, float]:
    """Evaluate on the test set, log the final metrics (once, also after a restart) and the artifacts.
    `resumed`: the run continued from a checkpoint, so a process before this one may have logged them."""
    t, classes = data.tensors, data.source.dataset.classes
    tested = results.test(model, result, t.x_test, t.y_test, classes, spec.train, cfg.runtime)
    if not resumed or "test_acc" not in tracker.runs_metrics(
        run_id
    ):  # a restart after the final log logs nothing twice
        tracker.log_metrics(run_id, tested.metrics)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / names.CONFIG).write_text(credentials.mask(config.to_toml(cfg, {"run": spec.flat()})))
        evaluation.write_confusion_csv(tested.confusion, classes, folder / names.CONFUSION)
        evaluation.write_per_class_csv(tested.scores, classes, folder / names.PER_CLASS)
        results.write_predictions(
            folder / names.PREDICTIONS, t.y_test, tested.predicted, tested.predicted_last, tested.probs
        )
        last_is_selected = result.selected_epoch == len(result.history)
        torch.save(  # the selected weights are the Logged Model's: each set of weights is stored once
            {"last": None if last_is_selected else model.state_dict(), "selected_epoch": result.selected_epoch},
            folder / names.WEIGHTS,
        )
        tracker.log_artifacts(run_id, folder)
    with tempfile.TemporaryDirectory() as tmp:
        code, unfaithful = trained_code(spec, Path(tmp))
        if unfaithful:  # the run and its numbers stand; its model would carry code it was not trained with
            result.notes.append(f"no MLflow model logged: {unfaithful}")
        else:
            models.log_model(
                tracker.client, run_id, tracker.experiment_id, tested.selected, engine.to_float(t.x_test[:2]), code
            )
    if not cfg.runtime.run_figures:
        return tested.metrics
    rows = [names.epoch_metrics(s) for s in result.history]
    curves = {k: [r[k] for r in rows] for k in names.EPOCH_METRICS}
    figures = (
        curves,
        f"{spec.variant}, seed {spec.seed}",
        {f"{spec.variant} seed {spec.seed}": tested.confusion},
        classes,
    )
    _pending.append((run_id, _artist().submit(_draw, *figures)))
    return tested.metrics


_pending: list[tuple[str, Future]] = []  # (run id, its figures being drawn), oldest first


@functools.cache
def _artist() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-figures")


def _draw(curves: dict, title: str, matrices: dict, classes) -> dict[str, bytes]:
    """A run's figures as PNG files' bytes (drawn on the background thread; the store is written on the caller's)."""
    from harness.report import plots  # matplotlib and seaborn load when a run first records, not with the runner

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plots.run_curves(curves, title, folder / names.CURVES_PLOT)
        plots.confusion_matrices(matrices, classes, folder / names.CONFUSION_PLOT)
        return {name: (folder / name).read_bytes() for name in (names.CURVES_PLOT, names.CONFUSION_PLOT)}


def log_figures(tracker, wait: bool = False) -> list[str]:
    """Log the figures drawn so far to their runs (with `wait`, every one still being drawn too),
    oldest first; returns a line for each run whose figures could not be drawn or logged."""
    problems = []
    while _pending and (wait or _pending[0][1].done()):
        run_id, future = _pending.pop(0)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                for name, data in future.result().items():
                    (Path(tmp) / name).write_bytes(data)
                tracker.log_artifacts(run_id, Path(tmp))
        except Exception as e:  # noqa: BLE001 - a figure is a view of what the run logged: the run stands without it
            problems.append(f"run {run_id}: its figures could not be written ({type(e).__name__}: {e})")
    return problems


def user_code(spec: RunSpec) -> list[str]:
    """The files of the run's user components (its model may pickle classes defined in them)."""
    from harness import variants

    base = spec.variant.split("@")[0]
    return sorted({c.path for c in variants.get(base).components if not c.shipped and c.path})


def trained_code(spec: RunSpec, folder: Path) -> tuple[list[str], str]:
    """The code a logged model carries: each user component file as it was imported, the code the
    run trained with, written into `folder` (the file may have been edited since: a model once
    carried the edited file and scored 2% in another process). Returns the paths and '', or [] and why
    no faithful model can be logged (a helper module the file imports changed since)."""
    from harness.variants import plugins

    out = []
    for path in user_code(spec):
        source = plugins.imported_source(path)
        if source is None:  # a module of an installed package: as it is installed
            out.append(path)
            continue
        if plugins.helpers_changed(path):
            return [], f"a module that {Path(path).name} imports changed while the run trained"
        copy = folder / Path(path).name
        copy.write_bytes(source)
        out.append(str(copy))
    return out, ""
