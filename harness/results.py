"""What a finished run produces: the test set read once (for the selected weights and the last
epoch's), the final metrics, and the artifacts (configuration, confusion matrix, per-class
scores, per-image test predictions, weights, plots)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness import config as config_mod
from harness import engine, evaluation
from harness.config import ExperimentConfig, RunSpec
from harness.data import Loaded
from harness.tracking import EPOCH_METRICS, epoch_metrics


def final_metrics(result: engine.Result, test: tuple[float, float], last: tuple[float, float], n_params: int,
                  f1: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    """The run's summary numbers: the selected epoch, validation extremes, the last epoch, the test set."""
    h = result.history
    return {
        "selected_epoch": float(result.selected_epoch),
        "best_val_acc": max(s.val_acc for s in h),
        "best_val_acc_epoch": float(max(h, key=lambda s: s.val_acc).epoch),
        "min_val_loss": min(s.val_loss for s in h),
        "min_val_loss_epoch": float(min(h, key=lambda s: s.val_loss).epoch),
        "selected_val_acc": h[result.selected_epoch - 1].val_acc,
        "final_val_acc": h[-1].val_acc,
        "final_val_loss": h[-1].val_loss,
        "final_train_acc": h[-1].train_acc,
        "final_gap_acc": h[-1].train_acc - h[-1].val_acc,
        "epoch_seconds_mean": float(np.mean([s.seconds for s in h])),
        "test_loss": test[0],
        "test_acc": test[1],
        "test_loss_last": last[0],
        "test_acc_last": last[1],
        "n_params": float(n_params),
        **{f"test_f1_{name}": float(f1[i]) for i, name in enumerate(classes)},
    }


PREDICTIONS = "predictions.npz"  # per test image: the label, the selected weights' and the last epoch's prediction


def write_predictions(path: Path, labels: torch.Tensor, selected: torch.Tensor, last: torch.Tensor) -> None:
    """The per-image test predictions (int16), for the report's bootstrap over test images."""
    np.savez_compressed(path, **{k: v.cpu().numpy().astype(np.int16) for k, v in
                                 (("labels", labels), ("selected", selected), ("last", last))})


def record(tracker, run_id: str, cfg: ExperimentConfig, spec: RunSpec, data: Loaded, model: nn.Module,
           result: engine.Result) -> dict[str, float]:
    """Evaluate on the test set, log the final metrics (once, also after a restart) and the artifacts."""
    t, classes = data.tensors, data.source.dataset.classes
    selected = engine.copy_weights(model, result.selected_state)
    test_loss, test_acc, pred = engine.evaluate(selected, t.x_test, t.y_test, spec.train, cfg.runtime)
    last_loss, last_acc, last_pred = engine.evaluate(model, t.x_test, t.y_test, spec.train, cfg.runtime)
    last = (last_loss, last_acc)
    cm = evaluation.confusion_matrix(t.y_test.cpu().numpy(), pred.cpu().numpy(), len(classes))
    scores = evaluation.per_class(cm)
    metrics = final_metrics(result, (test_loss, test_acc), last, sum(p.numel() for p in model.parameters()), scores["f1"], classes)
    if "test_acc" not in tracker.runs_metrics(run_id):  # a restart after the final log logs nothing twice
        tracker.log_metrics(run_id, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.toml").write_text(config_mod.to_toml(cfg, {"run": spec.flat()}))
        evaluation.write_confusion_csv(cm, classes, folder / "confusion_matrix.csv")
        evaluation.write_per_class_csv(scores, classes, folder / "per_class.csv")
        write_predictions(folder / PREDICTIONS, t.y_test, pred, last_pred)
        torch.save({"last": model.state_dict(), "selected": result.selected_state, "selected_epoch": result.selected_epoch}, folder / "model.pt")
        from harness import plots

        rows = [epoch_metrics(s) for s in result.history]
        curves = {k: [r[k] for r in rows] for k in EPOCH_METRICS}
        plots.run_curves(curves, f"{spec.variant}, seed {spec.seed}", folder / "learning_curves.png")
        plots.confusion_matrices({f"{spec.variant} seed {spec.seed}": cm}, classes, folder / "confusion_matrix.png")
        tracker.log_artifacts(run_id, folder)
    from harness import models

    models.log_model(tracker.client, run_id, selected, engine.to_float(t.x_test[:2]))
    return metrics
