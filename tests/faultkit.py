"""Helpers for the fault-tolerance tests: run the CLI with a fault, and read a store's results in a
form that compares bit for bit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from mlflow import MlflowClient
from mlflow.entities import ViewType

from tests.conftest import fresh_store, harness  # noqa: F401 - fresh_store is used by the tests too

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


def run(work: Path, data: Path, variant: str, *extra: str, fault: str = "", epochs: int = 4):
    fresh_store(work)
    env = {"HARNESS_FAULT": fault} if fault else {}
    args = [
        "run",
        "--variants",
        variant,
        "--seeds",
        "11,",
        "--epochs",
        str(epochs),
        "--set",
        "train.batch_size=32",
        "--set",
        "train.threads=1",
        *extra,
    ]
    return harness(*args, cwd=work, data=data, env=env, timeout=300)


def client(work: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")


def seed_runs(work: Path, experiment: str = "default") -> list:
    c = client(work)
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'", run_view_type=ViewType.ALL)
    return sorted(
        runs, key=lambda r: (r.data.tags["harness.variant"], int(r.data.tags["harness.seed"]), r.info.start_time)
    )


def results(work: Path) -> dict:
    """Everything a finished run produced that must not depend on interruptions."""
    c = client(work)
    finished = [r for r in seed_runs(work) if r.info.status == "FINISHED" and r.info.lifecycle_stage == "active"]
    assert len(finished) == 1, [(r.info.run_id, r.info.status) for r in seed_runs(work)]
    r = finished[0]
    out = {"run_id": r.info.run_id}
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
