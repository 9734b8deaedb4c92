"""Per-image analyses of finished runs' ledgers (each run's `predictions.npz`: the label, the
predicted class and the class probabilities of every test image, harness/training/results.py):
which images a variant fixes or breaks against the baseline (the flip table), how often two seeds
of one variant disagree (churn), the seed ensemble, and a variant's reliability curve. A ledger
is the dict the store reads back (`SeedRun.predictions`); ledgers recorded before the
probabilities were stored have no "probs", and what needs them returns None."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from harness.training import evaluation


@dataclass(frozen=True)
class Flips:
    """Images the variant gets right on most of its seeds where the baseline does not (`fixed`),
    and the reverse (`broken`), counted per true class."""

    fixed: np.ndarray  # per class
    broken: np.ndarray  # per class
    images: int
    seeds: tuple[int, int]  # the baseline's ledgers, the variant's


def same_images(ledgers: list[dict]) -> bool:
    """Whether the ledgers are of one test set: the same labels in the same order."""
    first = ledgers[0]["labels"]
    return all(len(g["labels"]) == len(first) and np.array_equal(g["labels"], first) for g in ledgers[1:])


def right_on_most(ledgers: list[dict]) -> np.ndarray:
    """Per image: right on more than half of the ledgers (a tie counts as not)."""
    right = np.stack([g["selected"] == g["labels"] for g in ledgers])
    return 2 * right.sum(0) > len(ledgers)


def flips(base: list[dict], variant: list[dict], classes: int) -> Flips | None:
    """The flip table of `variant` against `base` (None unless both have ledgers of one test set)."""
    if not base or not variant or not same_images(base + variant):
        return None
    b, v = right_on_most(base), right_on_most(variant)
    labels = base[0]["labels"].astype(np.int64)
    return Flips(
        np.bincount(labels[v & ~b], minlength=classes),
        np.bincount(labels[b & ~v], minlength=classes),
        len(labels),
        (len(base), len(variant)),
    )


def churn(ledgers: list[dict]) -> float:
    """The mean share of test images on which two seeds predict different classes, over every
    pair of the ledgers (NaN under two ledgers or over different test sets)."""
    if len(ledgers) < 2 or not same_images(ledgers):
        return float("nan")
    pairs = [np.mean(a["selected"] != b["selected"]) for a, b in itertools.combinations(ledgers, 2)]
    return float(np.mean(pairs))


def with_probs(ledger: dict | None) -> bool:
    """Whether a run's ledger holds class probabilities (None: the run stored no ledger)."""
    return ledger is not None and "probs" in ledger


def has_probs(ledgers: list[dict]) -> bool:
    return bool(ledgers) and all(map(with_probs, ledgers))


def ensemble(ledgers: list[dict]) -> tuple[float, float] | None:
    """The seed ensemble's test accuracy (percent) and NLL: the mean of the seeds' class
    probabilities, its top class (the first largest) and its NLL as a run's (evaluation.nll). None
    without probabilities for every ledger or over different test sets."""
    if not has_probs(ledgers) or not same_images(ledgers):
        return None
    mean = np.mean([g["probs"].astype(np.float64) for g in ledgers], axis=0)
    labels = ledgers[0]["labels"].astype(np.int64)
    return 100.0 * float(np.mean(mean.argmax(1) == labels)), evaluation.nll(mean, labels)


def reliability(ledgers: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The reliability curve of the ledgers' images pooled (evaluation.reliability: per confidence
    bin the count, mean confidence and accuracy); None without probabilities for every ledger."""
    if not has_probs(ledgers):
        return None
    probs = np.concatenate([g["probs"] for g in ledgers])
    labels = np.concatenate([g["labels"] for g in ledgers])
    return evaluation.reliability(probs, labels)


@dataclass(frozen=True)
class Equivalence:
    """A TOST of re-trained ledgers against stored ones: the mean per-image difference in being
    right (points of accuracy, re-trained minus stored), its 1 − 2α interval and the TOST p."""

    delta: float
    low: float
    high: float
    p: float
    images: int


def equivalence(pairs: list[tuple[np.ndarray, np.ndarray]], margin: float, alpha: float) -> Equivalence:
    """TOST of ±`margin` points on the per-image differences d = 100 · (right again − right before)
    of every pair of ledgers' images pooled, with the normal approximation to the mean of d
    (thousands of images; images independent, the test set fixed). No spread at all (the same
    images right in both) gives p 0 inside the margin and 1 outside."""
    from scipy.special import ndtr, ndtri

    d = 100.0 * np.concatenate([again.astype(np.float64) - before.astype(np.float64) for before, again in pairs])
    n, mean = len(d), float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    if se == 0.0:
        return Equivalence(mean, mean, mean, 0.0 if abs(mean) < margin else 1.0, n)
    z = float(ndtri(1 - alpha))
    p = max(float(ndtr(-(mean + margin) / se)), float(ndtr((mean - margin) / se)))
    return Equivalence(mean, mean - z * se, mean + z * se, p, n)
