"""The CUDA paths (harness/training/engine.py and fused.py, harness/running/preflight.py and
fusing.py, harness/cli/bench.py), each checked on the CPU where it can be: what a card would do
differently is simulated by the state or setting it would leave. A resume from a checkpoint written
on another device type, fp32 with TF32 off and the run tags saying so, torch.compile on CUDA without
a C compiler refused in one line, `train.fuse = auto` saying when its probe failed, cuBLAS's
workspace set before bench trains, and a static last batch for CUDA graphs."""

from __future__ import annotations

import os

import pytest
import torch

from harness.base.errors import UsageError
from harness.running import fusing, preflight
from harness.training import engine, fused
from tests.helpers import arrays, parts


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return (*arrays(128, 1), *arrays(64, 2))


def _snapshots(train, epochs: int = 1) -> list[dict]:
    seen = []
    train(lambda p: seen.append(p.snapshot) if p.phase == "epoch" else None, None, epochs)
    return seen


def test_a_fused_group_resumes_from_a_checkpoint_written_on_another_device_type(data):
    """A member's CUDA dropout generator state (16 bytes) means nothing to a CPU generator: the
    member's stream restarts from its seed and epoch, the group trains on, and the result says so."""
    build, pieces, _ = parts("dropout")

    def train(progress, resume, epochs):
        members = [fused.Member(build, *data, engine.TrainSettings(epochs=epochs, batch_size=32), s) for s in (1, 2)]
        return fused.train_group(members, progress, resume, pieces=pieces)

    snapshot = _snapshots(train)[0]
    for member in snapshot["members"]:  # as a card leaves it
        member["rng"]["dropout"], member["rng"]["dropout_device"] = torch.zeros(16, dtype=torch.uint8), "cuda"
    out = train(lambda p: None, snapshot, 2)
    for _, result in out:
        assert len(result.history) == 2
        assert result.notes and "written on cuda" in result.notes[0] and "fresh stream" in result.notes[0]
    same = train(lambda p: None, _snapshots(train)[0], 2)  # the same device type: no note
    assert all(not r.notes for _, r in same)


def test_a_separate_run_resumes_from_a_checkpoint_written_on_a_card(data):
    """Only the training device's CUDA generator is saved (a resume may see fewer GPUs); on another
    device type the run goes on and notes it; a checkpoint in the older format (every GPU's state)
    still loads."""
    build = parts("dropout")[0]
    settings = engine.TrainSettings(epochs=2, batch_size=32)

    def train(progress, resume, epochs):
        return engine.train(build, *data, engine.TrainSettings(epochs=epochs, batch_size=32), 3, progress, resume)

    snapshot = _snapshots(train)[0]
    assert snapshot["rng"]["device"] == "cpu" and snapshot["rng"]["cuda"] is None
    snapshot["rng"]["device"], snapshot["rng"]["cuda"] = "cuda", torch.zeros(16, dtype=torch.uint8)
    _, result = engine.train(build, *data, settings, 3, resume=snapshot)
    assert len(result.history) == 2 and "written on cuda" in result.notes[0]
    old = _snapshots(train)[0]
    del old["rng"]["device"]
    old["rng"]["cuda"] = []  # the old format on a machine without CUDA
    _, result = engine.train(build, *data, settings, 3, resume=old)
    assert not result.notes


def test_fp32_turns_tf32_off_and_the_run_tags_say_which(data):
    from harness.tracking import provenance

    engine.train(parts("baseline")[0], *data, engine.TrainSettings(epochs=1, batch_size=64, precision="bf16"), 1)
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    engine.train(parts("baseline")[0], *data, engine.TrainSettings(epochs=1, batch_size=64), 1)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    tags = provenance.determinism(torch.device("cpu"))
    assert tags["tf32_cudnn"] == "False" and tags["tf32_matmul"] == "False"


def test_compile_on_cuda_without_a_c_compiler_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler")
    with pytest.raises(UsageError, match=r"on CUDA needs a C compiler .*Triton"):
        preflight.check_runtime(engine.TrainSettings(), engine.Runtime(compile="default"), torch.device("cuda"))


def test_fuse_auto_says_when_its_probe_failed_instead_of_not_fusing_quietly(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(fusing, "measure", broken)
    args = (torch.device("cuda"), (3, 32, 32), 10, engine.TrainSettings(), engine.Runtime())
    most, why = fusing.decide("auto", *args)
    assert most == 1 and "probe failed" in why and "illegal memory access" in why
    assert fusing.decide("auto", torch.device("cpu"), *args[1:]) == (1, "not on a CPU")


def test_bench_sets_cublas_workspace_before_any_row_trains(monkeypatch):
    from harness.cli import bench

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    bench.parse_engine_settings("determinism=strict", torch.device("cpu"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == engine.CUBLAS_WORKSPACE


def test_a_static_last_batch_where_the_setting_asks_for_it(data):
    """train.last_batch = drop: every step of an epoch the same size, as a captured CUDA graph
    needs (128 images in batches of 48: 2 steps, 32 images left out), in both loops; a fused
    member still draws exactly its separate run's dropout masks, epoch after epoch."""
    from tests.helpers import NOISE_FACTOR, float_noise, gap

    build, pieces, _ = parts("dropout")
    settings = engine.TrainSettings(epochs=2, batch_size=48, last_batch="drop")
    seen = []
    alone = engine.train(
        build, *data, settings, 1, seen.append, runtime=engine.Runtime(progress_every=1), pieces=pieces
    )[0]
    assert {p.steps for p in seen if p.phase == "train"} == {2}
    other = engine.train(build, *data, settings, 1, pieces=pieces, runtime=engine.Runtime(memory_format="contiguous"))[
        0
    ]
    member = fused.train_group([fused.Member(build, *data, settings, s) for s in (1, 2)], pieces=pieces)[0][0]
    tolerance = NOISE_FACTOR * float_noise([(alone.state_dict(), other.state_dict())])
    assert gap(alone.state_dict(), member.state_dict()) <= tolerance
    kept = engine.train(build, *data, engine.TrainSettings(epochs=2, batch_size=48), 1, pieces=pieces)[0]
    assert gap(alone.state_dict(), kept.state_dict()) > 100 * tolerance  # the setting changes the training
