"""Non-finite training: the run fails at once with variant, seed, epoch and step; nothing is
checkpointed after it; the other runs go on; the report and exit code say so."""

from __future__ import annotations

import pytest
import torch

from harness.training import engine
from tests.faultkit import seed_runs
from tests.helpers import Exploding, fresh_store, run_cli


# separate runs, and fused groups (dropout's members with baseline's: the lr is per member)
@pytest.mark.parametrize("fuse", ["off", "4"])
def test_cli_run_with_diverging_variants(tmp_path, data_dir, fuse):
    fresh_store(tmp_path)
    proc = run_cli(
        "run",
        "--variants",
        "baseline,batchnorm,dropout",
        "--seeds",
        "11,12",
        "--epochs",
        "2",
        "--fuse",
        fuse,
        "--set",
        "train.batch_size=32",
        "--set",
        "params.batchnorm.lr=1e30",
        "--set",
        "params.dropout.lr=1e30",
        cwd=tmp_path,
        data=data_dir,
    )
    assert proc.returncode == 1, proc.stderr
    assert "2 of 6 runs finished; 4 failed" in proc.stdout
    if fuse != "off":  # the diverging members failed alone: their group's baseline members finished
        assert (
            "fused group of 4: baseline seed 11, baseline seed 12, dropout seed 11, dropout seed 12" in proc.stdout
        ), proc.stdout[-3000:]
    for variant in ("batchnorm", "dropout"):
        for seed in (11, 12):
            assert f"FAILED {variant} seed {seed}: non-finite loss in {variant} seed {seed}: loss became" in proc.stdout
    runs = seed_runs(tmp_path)
    states = {(r.data.tags["harness.variant"], r.info.status) for r in runs}
    assert states == {("baseline", "FINISHED"), ("batchnorm", "FAILED"), ("dropout", "FAILED")}
    for r in runs:
        if r.info.status == "FAILED":
            assert "at epoch 1, step" in r.data.tags["harness.error"]
            assert "val_acc" not in r.data.metrics  # nothing logged for the failed epoch
    assert not list((tmp_path / "checkpoints" / "default").glob("*.pt"))
    report = (tmp_path / "reports" / "default" / "report.md").read_text()
    assert "| batchnorm | 0/2 | – |" in report and "| dropout | 0/2 | – |" in report
    assert "| dropout | 11 | FAILED | non-finite loss in dropout seed 11" in report


@pytest.mark.parametrize("explode_at,expected", [(1, (1, 1)), (3, (1, 3)), (4, (1, 4)), (6, (2, 2)), (12, (3, 4))])
def test_engine_names_the_epoch_and_step(tensors, explode_at, expected):  # noqa: F811
    cfg = engine.TrainSettings(epochs=3, batch_size=64)  # 4 steps an epoch
    snapshots = []
    with pytest.raises(engine.NonFiniteLoss) as e:
        engine.train(
            lambda: Exploding(explode_at),
            tensors.x_train,
            tensors.y_train,
            tensors.x_val,
            tensors.y_val,
            cfg,
            0,
            lambda p: snapshots.append(p.epoch) if p.phase == "epoch" else None,
        )
    assert (e.value.epoch, e.value.step) == expected
    assert snapshots == list(range(1, expected[0]))  # no snapshot for the epoch that failed
    assert not torch.isfinite(torch.tensor(e.value.value))


NAN_AT_EVALUATION = """
import torch
from harness.variants.registry import Change, register
from harness.variants.lenet import LeNet


class NanWhenEvaluated(LeNet):
    def forward(self, x):
        out = super().forward(x)
        return out if self.training else out * float("nan")


@register("nan_eval", hypothesis="A network whose outputs are NaN at evaluation only.")
def nan_eval():
    return Change(architecture=NanWhenEvaluated)
"""


def test_a_network_that_is_nan_only_at_evaluation_fails_its_runs_and_the_others_finish(tmp_path, data_dir):
    """A network NaN only at evaluation fails its runs, never FINISHED at 10.30% (the share of class
    0, which argmax of NaN picks); the baseline's runs finish, and each variant's parent is closed."""
    fresh_store(tmp_path)
    (tmp_path / "nan_components.py").write_text(NAN_AT_EVALUATION)
    proc = run_cli(
        "run", "--components", "nan_components.py", "--variants", "baseline,nan_eval", "--seeds", "2",
        "--epochs", "1", "--set", "train.batch_size=64", cwd=tmp_path, data=data_dir,
    )  # fmt: skip
    assert proc.returncode == 1 and "2 of 4 runs finished; 2 failed" in proc.stdout, proc.stdout[-2000:]
    assert "outputs or loss not finite on the validation set at epoch 1" in proc.stdout
    runs = seed_runs(tmp_path)
    states = {(r.data.tags["harness.variant"], r.info.status) for r in runs}
    assert states == {("baseline", "FINISHED"), ("nan_eval", "FAILED")}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parents = {client.get_run(r.data.tags["mlflow.parentRunId"]).info.status for r in runs}
    assert parents == {"FINISHED"}  # a variant whose every run failed: its parent is closed too
    assert "| nan_eval | 0/2 | – |" in (tmp_path / "reports" / "default" / "report.md").read_text()
