"""The hold-out split: disjoint, complete, stable, and the tutorial's indices for `prefix`."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import loading

LABELS = np.repeat(np.arange(10), 500).astype(np.uint8)
np.random.default_rng(1).shuffle(LABELS)


@pytest.mark.parametrize("kind", ["prefix", "stratified"])
def test_disjoint_and_complete(kind):
    s = loading.make_split(LABELS, kind, 0.8, 0)
    assert len(np.intersect1d(s.train, s.val)) == 0
    assert np.array_equal(np.sort(np.concatenate([s.train, s.val])), np.arange(len(LABELS)))
    assert len(s.train) == 4000 and len(s.val) == 1000


def test_prefix_is_the_tutorials_split():
    labels = np.zeros(50_000, dtype=np.uint8)
    s = loading.make_split(labels, "prefix", 0.8, 123)
    assert np.array_equal(s.train, np.arange(40_000))
    assert np.array_equal(s.val, np.arange(40_000, 50_000))


def test_stratified_keeps_class_balance():
    s = loading.make_split(LABELS, "stratified", 0.8, 0)
    assert np.all(np.bincount(LABELS[s.train], minlength=10) == 400)
    assert np.all(np.bincount(LABELS[s.val], minlength=10) == 100)


def test_fingerprint_is_stable_and_depends_on_split_seed_only():
    a = loading.make_split(LABELS, "stratified", 0.8, 0)
    b = loading.make_split(LABELS, "stratified", 0.8, 0)
    c = loading.make_split(LABELS, "stratified", 0.8, 1)
    assert a.fingerprint == b.fingerprint and np.array_equal(a.train, b.train)
    assert a.fingerprint != c.fingerprint
    assert (
        loading.make_split(LABELS, "prefix", 0.8, 0).fingerprint
        == loading.make_split(LABELS, "prefix", 0.8, 5).fingerprint
    )
    # the fingerprint is a hash of the index arrays, so a known split has a known value
    assert a.fingerprint == loading.fingerprint(a.train, a.val)
    assert len(a.fingerprint) == 16


def test_ratio_that_leaves_a_side_empty_is_rejected():
    with pytest.raises(loading.UsageError, match="empty"):
        loading.make_split(LABELS[:3], "prefix", 0.1, 0)
