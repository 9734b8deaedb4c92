"""Test-set evaluation of one run (tutorial part 2): confusion matrix and per-class precision,
recall and F1, as numpy arrays and CSV files (which carry the class names)."""

from __future__ import annotations

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


def write_confusion_csv(cm: np.ndarray, classes: tuple[str, ...], path: Path) -> None:
    lines = ["true\\predicted," + ",".join(classes)]
    lines += [f"{name}," + ",".join(str(int(v)) for v in row) for name, row in zip(classes, cm)]
    path.write_text("\n".join(lines) + "\n")


def read_confusion_csv(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """The class names (from the header) and the matrix, as `write_confusion_csv` wrote them."""
    header, *rows = path.read_text().strip().splitlines()
    classes = tuple(header.split(",")[1:])
    return classes, np.array([[int(v) for v in row.split(",")[1:]] for row in rows], dtype=np.int64)


def write_per_class_csv(scores: dict[str, np.ndarray], classes: tuple[str, ...], path: Path) -> None:
    lines = ["class,precision,recall,f1,support"]
    for i, name in enumerate(classes):
        p, r, f, s = (scores[k][i] for k in ("precision", "recall", "f1", "support"))
        lines.append(f"{name},{p:.6f},{r:.6f},{f:.6f},{int(s)}")
    path.write_text("\n".join(lines) + "\n")
