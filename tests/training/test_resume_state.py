"""Exact resume in-process: a snapshot after any epoch continues bit for bit, and dropping any one
piece of it (each RNG, the optimizer, the weights) breaks that."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from harness.training import engine
from harness.variants.lenet import LeNet
from tests.helpers import same_training, snapshot_keeper


class Noisy(nn.Module):
    """Draws from every RNG a variant might use: torch (dropout), Python's random and NumPy."""

    def __init__(self):
        super().__init__()
        self.net = LeNet(dropout=0.3)

    def forward(self, x):
        if self.training:
            x = x + 0.05 * random.random() + 0.05 * float(np.random.rand())
        return self.net(x)


CFG = (engine.TrainSettings(epochs=3, batch_size=32, shuffle=True), engine.Runtime())


def run(d, resume=None, keep_at=None, cfg=CFG):
    torch.set_num_threads(1)
    on_progress, kept = snapshot_keeper(keep_at)
    model, result = engine.train(
        Noisy, d.x_train, d.y_train, d.x_val, d.y_val, cfg[0], 7, on_progress, resume=resume, runtime=cfg[1]
    )
    return model, result, kept.get("snap")


@pytest.fixture(scope="module")
def reference(stratified_tensors):
    return run(stratified_tensors)


@pytest.mark.parametrize("after_epoch", [1, 2])
def test_resume_is_bit_identical(stratified_tensors, reference, after_epoch):
    _, _, snap = run(stratified_tensors, keep_at=after_epoch)
    assert same_training(run(stratified_tensors, resume=snap), reference)


@pytest.mark.parametrize(
    "piece", [("rng", "python"), ("rng", "numpy"), ("rng", "torch"), ("rng", "order"), ("optimizer",), ("model",)]
)
def test_dropping_any_piece_breaks_exactness(stratified_tensors, reference, piece):
    _, _, snap = run(stratified_tensors, keep_at=1)
    node = snap
    for part in piece[:-1]:
        node = node[part]
    del node[piece[-1]]
    assert not same_training(run(stratified_tensors, resume=snap), reference), (
        f"resume without {'.'.join(piece)} still matched"
    )


def test_resume_is_bit_identical_in_bf16_and_both_layouts(stratified_tensors):
    for layout in ("channels_last", "contiguous"):
        cfg = (engine.TrainSettings(epochs=3, batch_size=32, precision="bf16"), engine.Runtime(memory_format=layout))
        whole = run(stratified_tensors, cfg=cfg)
        _, _, snap = run(stratified_tensors, keep_at=2, cfg=cfg)
        assert same_training(run(stratified_tensors, resume=snap, cfg=cfg), whole)
        assert not same_training(whole, run(stratified_tensors))  # bf16 is not fp32 in disguise


def test_a_checkpoint_file_resumes_bit_identically_and_loads_weights_only(stratified_tensors, reference, tmp_path):
    """Through the file: every piece survives `torch.load(weights_only=True)`."""
    from harness.training import checkpoint

    _, _, snap = run(stratified_tensors, keep_at=1)
    checkpoint.save(tmp_path / "run.pt", snap)
    back = checkpoint.load_snapshot(tmp_path / "run.pt")
    assert isinstance(back["rng"]["numpy"], tuple) and back["rng"]["numpy"][1].dtype == np.uint32
    assert same_training(run(stratified_tensors, resume=back), reference)


class _Payload:
    """A pickle that runs code when loaded without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    from harness.training import checkpoint

    marker = tmp_path / "code-ran"
    torch.save({"epoch": 1, "payload": _Payload(marker)}, tmp_path / "evil.pt")
    assert checkpoint.load_snapshot(tmp_path / "evil.pt") is None  # treated as unreadable: the run starts over
    assert not marker.exists()
    torch.load(tmp_path / "evil.pt", weights_only=False)  # a load without weights_only: the code runs
    assert marker.exists()
