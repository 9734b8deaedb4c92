"""Shared fixtures: small synthetic CIFAR-shaped data written the way users provide the real one."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def make_arrays(
    n_train: int = 500, n_test: int = 200, seed: int = 0, classes: int = 10, shape: tuple = (32, 32, 3)
) -> dict[str, np.ndarray]:
    """Images (N×H×W×C, CIFAR-10's shape by default) whose mean colour depends on the class, so a
    few epochs learn something."""
    rng = np.random.default_rng(seed)

    def part(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % classes
        rng.shuffle(y)
        base = (y[:, None, None, None] * 23 + np.array([0, 60, 120][: shape[2]])) % 256
        x = np.clip(base + rng.normal(0, 40, size=(n, *shape)), 0, 255).astype(np.uint8)
        return x, y.astype(np.uint8)

    x_train, y_train = part(n_train)
    x_test, y_test = part(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def split_settings(**values):
    """engine.TrainSettings and engine.Runtime from one set of keyword values."""
    import dataclasses

    from harness.training import engine

    runtime = {f.name for f in dataclasses.fields(engine.Runtime)}
    return (
        engine.TrainSettings(**{k: v for k, v in values.items() if k not in runtime}),
        engine.Runtime(**{k: v for k, v in values.items() if k in runtime}),
    )


def snapshot_keeper(epoch: int | None):
    """An engine progress callback that keeps the snapshot after `epoch` as a checkpoint file holds
    it (saved and loaded again), and the dict it keeps it in (key "snap")."""
    import io

    import torch

    kept: dict = {}

    def on_progress(p) -> None:
        if p.phase == "epoch" and p.epoch == epoch:
            buf = io.BytesIO()
            torch.save(p.snapshot, buf)
            kept["snap"] = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)

    return on_progress, kept


def write_npz(folder: Path, filename: str = "cifar10.npz", **overrides: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {**make_arrays(), **overrides}
    np.savez(folder / filename, **arrays)
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_npz(tmp_path / "data")


def harness(
    *args: str, cwd: Path, data: Path | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m harness ARGS` in a real subprocess. A `run` with a fault point checkpoints
    after every epoch (train.checkpoint_seconds = 0), so that the N-th checkpoint a point counts
    is the N-th epoch's whatever the machine's speed (by default a run checkpoints every 2 s)."""
    if (
        env
        and env.get("HARNESS_FAULT")
        and args
        and args[0] == "run"
        and not any("checkpoint_seconds" in a for a in args)
    ):
        args = (*args, "--set", "train.checkpoint_seconds=0")
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_DATA_DIR")}
    full_env["PYTHONPATH"] = str(ROOT)
    if data is not None:
        full_env["HARNESS_DATA_DIR"] = str(data)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_default_sigint,
    )


def run_cli(*args: str, cwd: Path, data: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in this process (harness.cli.commands.main), with its own working
    folder, environment (as `harness` sets them) and captured standard output and error: for the
    many refusals that need no process of their own (a real subprocess costs 2-4 s of imports
    each). The subprocess runner `harness` stays for exit codes, signals and kills."""
    import contextlib
    import io
    import signal

    from harness.cli import commands

    saved_env, saved_cwd, saved_term = dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    try:
        for key in ("MLFLOW_TRACKING_URI", "HARNESS_DATA_DIR"):
            os.environ.pop(key, None)
        if data is not None:
            os.environ["HARNESS_DATA_DIR"] = str(data)
        os.environ.update(env or {})
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = commands.main(list(args))
            except SystemExit as e:  # argparse's own refusals
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        signal.signal(signal.SIGTERM, saved_term)
    return subprocess.CompletedProcess(["harness", *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    """A TCP port nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_sigint() -> None:
    """A runner started in the background (`nohup ... &`) ignores SIGINT, and its children inherit
    that, so Ctrl-C would never reach the harness under test: give the child the default."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@functools.lru_cache(maxsize=1)
def _store_template() -> Path:
    """An empty MLflow SQLite store, made once: creating the tables costs seconds per process."""
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="harness-store-"))
    MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder / "mlflow.db"


def fresh_store(work: Path) -> None:
    """Give `work` an empty, already-initialised MLflow store (as a first run would leave it)."""
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "mlflow.db").exists():
        shutil.copy(_store_template(), work / "mlflow.db")


def delete_while_written(folder: Path, tries: int = 100) -> None:
    """Delete `folder` while a running process may still write into it: rmtree fails with 'Directory
    not empty' when a file appears between its listing and its rmdir (seen in fresh-clone CI runs), so
    delete again until it is gone, and fail the test if it never is."""
    import time

    for _ in range(tries):
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{folder} could not be deleted while the process wrote into it ({tries} tries)")


@pytest.fixture
def clean_registry():
    """Whatever a test registers or imports from its files is forgotten afterwards."""
    import sys

    from harness.variants import plugins, registry

    before, modules, files = dict(registry._REGISTRY), set(sys.modules), dict(plugins._files)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    plugins._files.clear()
    plugins._files.update(files)
    for name in set(sys.modules) - modules:
        if getattr(sys.modules[name], "__file__", "") and "pytest-" in str(sys.modules[name].__file__):
            del sys.modules[name]


@pytest.fixture(scope="module")
def tensors():
    """Small synthetic data checked, split (prefix, 80%) and on the CPU, as the engine takes it."""
    from tests.helpers import tiny_tensors

    return tiny_tensors(300, 100)
