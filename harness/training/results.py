"""What a finished run produces: the test set read once, for the selected weights and for the last
epoch's, and from that the run's final metrics (calibration too), confusion matrix, per-class
scores and its per-image ledger (predicted classes and class probabilities). Writing them to the store is harness/running/recording.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness.training import engine, evaluation


@dataclass
class Tested:
    """A finished run read on the test set."""

    selected: nn.Module  # the network with the selected epoch's weights
    metrics: dict[str, float]  # final_metrics
    confusion: np.ndarray  # of the selected weights
    scores: dict[str, np.ndarray]  # precision, recall, F1 per class
    predicted: torch.Tensor  # by the selected weights, per test image
    predicted_last: torch.Tensor  # by the last epoch's
    probs: np.ndarray  # by the selected weights, per test image and class: the ledger's float16


def test(
    model: nn.Module,
    result: engine.Result,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    classes: tuple[str, ...],
    settings: engine.TrainSettings,
    runtime: engine.Runtime,
) -> Tested:
    """Evaluate the selected and the last weights on the test set, once each; once in all where the
    last epoch is the selected one (the same weights)."""
    selected = engine.copy_weights(model, result.selected_state)
    where = f"test set (the weights of epoch {result.selected_epoch})"
    test_loss, test_acc, pred, probs = engine.outputs(selected, x_test, y_test, settings, runtime, where=where)
    if result.selected_epoch == result.history[-1].epoch:
        last_loss, last_acc, last_pred = test_loss, test_acc, pred
    else:
        where = f"test set (the last weights, epoch {result.history[-1].epoch})"
        last_loss, last_acc, last_pred = engine.evaluate(model, x_test, y_test, settings, runtime, where=where)
    cm = evaluation.confusion_matrix(y_test.cpu().numpy(), pred.cpu().numpy(), len(classes))
    scores = evaluation.per_class(cm)
    n_params = sum(p.numel() for p in model.parameters())
    metrics = final_metrics(result, (test_loss, test_acc), (last_loss, last_acc), n_params, scores["f1"], classes)
    ledger = probs.cpu().numpy().astype(np.float16)  # the metrics are the stored ledger's: anyone can recompute them
    metrics.update(evaluation.calibration(ledger, y_test.cpu().numpy()))
    return Tested(selected, metrics, cm, scores, pred, last_pred, ledger)


def final_metrics(
    result: engine.Result,
    test: tuple[float, float],
    last: tuple[float, float],
    n_params: int,
    f1: np.ndarray,
    classes: tuple[str, ...],
) -> dict[str, float]:
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
        **{key: float(f1[i]) for i, key in enumerate(per_class_keys(classes))},
    }


def per_class_keys(classes) -> list[str]:
    """`test_f1_<class>` for each class, in a form MLflow accepts as a metric name: a character it
    refuses (a user's folder named `cat (5%)`, say; '/' too, which MLflow reads as a path) becomes
    '_', and a name is cut at 200 characters (MLflow's limit is 250); should two classes then share a
    name, each gets its label in front (`test_f1_3_cat__5__`). The per-class CSV keeps the true names."""
    safe = [
        "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-. :") else "_" for ch in str(c))[:200] for c in classes
    ]
    if len(set(safe)) < len(safe):
        safe = [f"{i}_{name}" for i, name in enumerate(safe)]
    return [f"test_f1_{name}" for name in safe]


def write_predictions(
    path: Path, labels: torch.Tensor, selected: torch.Tensor, last: torch.Tensor, probs: np.ndarray
) -> None:
    """The run's per-image ledger: the label and the predicted class of the selected weights and
    of the last epoch's (int16), and the selected weights' class probabilities (`probs`, float16,
    N × classes), for the report's per-image analyses and `verify`."""
    arrays = {
        k: v.cpu().numpy().astype(np.int16) for k, v in (("labels", labels), ("selected", selected), ("last", last))
    }
    np.savez_compressed(path, **arrays, probs=np.asarray(probs, dtype=np.float16))
