"""Test-set evaluation of one run (tutorial part 2): confusion matrix and per-class precision,
recall and F1, as numpy arrays and CSV files (which carry the class names); and how well the run's
class probabilities are calibrated (NLL, expected calibration error, Brier score)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class (0 where undefined, as scikit-learn's zero_division=0)."""
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(0).astype(float), cm.sum(1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": actual}


ECE_BINS = 15  # equal-width confidence bins of the expected calibration error (Guo et al., 2017)
SMALLEST = 2.0**-24  # float16's smallest subnormal: a stored probability of 0 counts as this in an NLL


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """The mean −log of each label's probability, each at least `SMALLEST` (float64)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    return float(-np.log(np.maximum(p[np.arange(len(y)), y], SMALLEST)).mean())


def reliability(
    probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin ((m-1)/bins, m/bins], m = 1..bins: how many images have their top
    probability in it, their mean top probability and the share of them whose top class is the
    label (NaN for an empty bin). `probs`: N × classes; the top class is the first largest."""
    p = np.asarray(probs, dtype=np.float64)
    confidence = p.max(1)
    right = p.argmax(1) == np.asarray(labels)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        acc = np.bincount(which, weights=right.astype(np.float64), minlength=bins) / counts
    return counts, conf, acc


def calibration(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """`test_nll` (mean −log of the label's probability, each at least float16's smallest
    subnormal, 2⁻²⁴, so a stored float16 ledger gives a finite number), `test_ece` (over
    `ECE_BINS` equal-width bins: Σ (images in bin / N) · |accuracy − mean confidence|, the top
    class being the first largest probability) and `test_brier` (mean over images of Σ over
    classes (p − one-hot)², from 0 to 2), computed in float64. Lower is better for each. A run's
    are of its stored float16 ledger (harness/training/results.py), so anyone can recompute them
    from `predictions.npz`. Its NLL is its `test_loss` (float32) to within float16 rounding where
    every label's probability is in float16's normal range, and lower where one is not (each
    image's −log is at most 24 · ln 2 ≈ 16.6)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    truth = p[np.arange(n), y]
    counts, conf, acc = reliability(p, y)
    used = counts > 0
    brier = (p**2).sum(1) - 2 * truth + 1
    return {
        "test_nll": nll(p, y),
        "test_ece": float((counts[used] / n * np.abs(acc[used] - conf[used])).sum()),
        "test_brier": float(brier.mean()),
    }


def write_confusion_csv(cm: np.ndarray, classes: tuple[str, ...], path: Path) -> None:
    """The matrix with its class names, written by the csv module: a name with a comma, a quote, a
    newline or U+2028 is quoted and reads back as written (tests/report/test_report.py)."""
    rows = [["true\\predicted", *classes], *([name, *(int(v) for v in row)] for name, row in zip(classes, cm))]
    _write_rows(path, rows)


def read_confusion_csv(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """The class names (from the header) and the matrix, as `write_confusion_csv` wrote them (or as
    earlier versions did, one plain line per row); ValueError where they do not form a square matrix."""
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    classes = tuple(header[1:])
    matrix = np.array([[int(v) for v in row[1:]] for row in rows], dtype=np.int64)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"{path.name}: {len(classes)} class names for a matrix of shape {matrix.shape}")
    return classes, matrix


def write_per_class_csv(scores: dict[str, np.ndarray], classes: tuple[str, ...], path: Path) -> None:
    rows: list[list] = [["class", "precision", "recall", "f1", "support"]]
    for i, name in enumerate(classes):
        p, r, f, s = (scores[k][i] for k in ("precision", "recall", "f1", "support"))
        rows.append([name, f"{p:.6f}", f"{r:.6f}", f"{f:.6f}", int(s)])
    _write_rows(path, rows)


def _write_rows(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
