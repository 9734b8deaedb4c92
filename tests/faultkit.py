"""Helpers for the fault-tolerance tests (tests/running/test_faults.py, test_fused_runs.py): run the
CLI with a fault, and read a store's results in a form that compares bit for bit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from mlflow import MlflowClient

from tests import helpers
from tests.helpers import fresh_store, run_process, store_client

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "gap_acc")
FINAL_KEYS = (
    "test_acc",
    "test_loss",
    "test_acc_last",
    "test_loss_last",
    "best_val_acc",
    "selected_epoch",
    "final_val_acc",
)


def run(
    work: Path,
    data: Path,
    variants: str,
    *extra: str,
    seeds: str = "11,",
    fault: str = "",
    epochs: int = 4,
    fuse=None,
    runner=run_process,
):
    """`run` of `variants` over `seeds` in a real process (a fault point ends it as a kill would;
    `runner=run_cli` runs it in this one), with small batches on one thread; `fuse`, when given, is
    passed as `--fuse`."""
    assert not (fault and runner is not run_process), "a fault point fires only in a real process (read at import)"
    fresh_store(work)
    env = {"HARNESS_FAULT": fault} if fault else {}
    args = ["run", "--variants", variants, "--seeds", seeds, "--epochs", str(epochs)]
    args += ["--fuse", str(fuse)] if fuse is not None else []
    args += ["--set", "train.batch_size=32", "--set", "train.threads=1", *extra]
    return runner(*args, cwd=work, data=data, env=env, timeout=300)


client = store_client  # the project's store, as the fault tests name it


def seed_runs(work: Path, experiment: str = "default") -> list:
    """Every seed run, deleted ones too: a fault must not leave a second live or finished run."""
    return helpers.seed_runs(work, experiment, every=True)


def results(work: Path) -> dict:
    """Every finished, live run's results by (variant, seed); a pair finished twice fails the test."""
    c, out = client(work), {}
    for r in seed_runs(work):
        if r.info.status != "FINISHED" or r.info.lifecycle_stage != "active":
            continue
        pair = (r.data.tags["harness.variant"], int(r.data.tags["harness.seed"]))
        assert pair not in out, f"two finished runs of {pair}"
        out[pair] = one_result(c, r)
    return out


def result(work: Path) -> dict:
    """The results of the store's only finished, live run."""
    finished = results(work)
    assert len(finished) == 1, [(r.info.run_id, r.info.status) for r in seed_runs(work)]
    return next(iter(finished.values()))


def one_result(c: MlflowClient, r) -> dict:
    """Everything a finished run produced that must not depend on interruptions, and its id, key
    and fused tag: each epoch's metrics (once per epoch), each final metric (once), its weights."""
    out = {"run_id": r.info.run_id, "key": r.data.tags["harness.run_key"], "fused": r.data.tags.get("harness.fused")}
    for key in EPOCH_KEYS:
        history = [(m.step, m.value) for m in c.get_metric_history(r.info.run_id, key)]
        steps = [s for s, _ in history]
        assert len(steps) == len(set(steps)), f"{key} logged twice for an epoch: {steps}"
        out[key] = sorted(history)
    for key in FINAL_KEYS:
        history = c.get_metric_history(r.info.run_id, key)
        assert len(history) == 1, f"{key} logged {len(history)} times"
        out[key] = history[0].value
    out["weights"] = weights(c, r.info.run_id)
    return out


def weights(c, run_id: str) -> dict:
    """A run's last and selected state dicts: the selected ones from its Logged Model, the last from
    model.pt (None there when the last epoch is the selected one: each set is stored once)."""
    import mlflow.artifacts
    import mlflow.pytorch

    outputs = c.get_run(run_id).outputs.model_outputs
    assert len(outputs) == 1, outputs  # one Logged Model, linked to the run that made it
    with tempfile.TemporaryDirectory() as tmp:
        stored = torch.load(c.download_artifacts(run_id, "model.pt", tmp), weights_only=True)
        # its files where this store keeps them (MLflow resolves `models:/` through its global tracking URI)
        where = c.get_logged_model(outputs[0].model_id).artifact_location
        selected = mlflow.pytorch.load_model(mlflow.artifacts.download_artifacts(where, dst_path=tmp)).state_dict()
    return {"last": stored["last"] if stored["last"] is not None else selected, "selected": selected}


def same(a: dict, b: dict) -> bool:
    for key in EPOCH_KEYS + FINAL_KEYS:
        if a[key] != b[key]:
            return False
    for part in ("last", "selected"):
        wa, wb = a["weights"][part], b["weights"][part]
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True
