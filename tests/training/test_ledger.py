"""A run's calibration metrics (harness/training/evaluation.py) on hand-worked cases: NLL, the
15-bin expected calibration error and the Brier score; and the ledger a run writes
(harness/training/results.py): float16 probabilities beside the int16 classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.training import evaluation, results

# five images, three classes; the confidences 0.9, 0.62, 0.7, 0.45, 0.88 sit inside the 15 bins
# ((m-1)/15, m/15], away from their edges: 0.9 and 0.88 share bin 14, the others are alone
PROBS = np.array(
    [[0.9, 0.05, 0.05], [0.62, 0.28, 0.1], [0.2, 0.7, 0.1], [0.45, 0.3, 0.25], [0.88, 0.1, 0.02]], dtype=np.float64
)
LABELS = np.array([0, 1, 1, 2, 1])


def test_ece_of_a_hand_worked_case():
    # bin 14: two images, one right, mean confidence 0.89 -> 2/5 * |0.5 - 0.89| = 0.156;
    # 0.62 wrong, 0.7 right, 0.45 wrong alone -> (0.62 + 0.3 + 0.45) / 5 = 0.274
    assert evaluation.calibration(PROBS, LABELS)["test_ece"] == pytest.approx(0.43, abs=1e-12)
    counts, conf, acc = evaluation.reliability(PROBS, LABELS)
    assert counts.sum() == 5 and counts[13] == 2 and conf[13] == pytest.approx(0.89) and acc[13] == 0.5
    assert counts[9] == 1 and counts[10] == 1 and counts[6] == 1 and np.isnan(acc[0])


def test_nll_and_brier_of_the_hand_worked_case():
    got = evaluation.calibration(PROBS, LABELS)
    assert got["test_nll"] == pytest.approx(
        -(math.log(0.9) + math.log(0.28) + math.log(0.7) + math.log(0.25) + math.log(0.1)) / 5
    )
    # Σ over classes (p - one-hot)² per image: 0.015, 0.9128, 0.14, 0.855, 1.5848
    assert got["test_brier"] == pytest.approx((0.015 + 0.9128 + 0.14 + 0.855 + 1.5848) / 5)


def test_a_confidence_on_a_bin_edge_falls_in_the_lower_bin_and_a_zero_probability_is_finite():
    probs = np.array([[2 / 3, 1 / 3], [0.0, 1.0]])  # 2/3 = 10/15: the top of bin 10
    counts, _, _ = evaluation.reliability(probs, np.array([0, 0]))
    assert counts[9] == 1 and counts[14] == 1
    nll = evaluation.calibration(probs, np.array([0, 0]))["test_nll"]
    assert nll == pytest.approx((-math.log(2 / 3) + 24 * math.log(2)) / 2)  # 0 counts as float16's 2^-24


def test_the_ledger_keeps_float16_probabilities_beside_the_int16_classes(tmp_path):
    labels, selected = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 2])
    probs = torch.softmax(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)), 1).numpy().astype(np.float16)
    results.write_predictions(tmp_path / "p.npz", labels, selected, selected, probs)
    with np.load(tmp_path / "p.npz") as f:
        assert f["probs"].dtype == np.float16 and f["selected"].dtype == np.int16
        assert np.array_equal(f["probs"], probs) and np.array_equal(f["labels"], [0, 1, 2])
