"""The tests' shared helpers, plain functions and constants (the fixtures are in conftest.py):
synthetic data on disk and as tensors, the CLI in a real process (`run_process`) or in this one
(`run_cli`), a free port, a fresh store, the one-line refusal contract, networks and data for the
engine's and the fused loop's tests, user component files and image folders, fake runs as the store
gives them back, and the report's form checks. No test file imports another."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from harness.data import loading
from harness.data.datasets import CIFAR10_CLASSES
from harness.tracking.readback import SeedRun
from harness.training import engine
from harness.variants import registry
from tests import report_tables

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


def process_env(data: Path | None = None, env: dict | None = None, base: dict | None = None) -> dict:
    """The environment of a `python -m harness` child: `base` (this process's by default) without
    a tracking URI or data folder of its own, this checkout first on the path, then `data` and `env`."""
    full_env = {k: v for k, v in (os.environ if base is None else base).items()}
    for key in ("MLFLOW_TRACKING_URI", "HARNESS_DATA_DIR"):
        full_env.pop(key, None)
    full_env["PYTHONPATH"] = str(ROOT)
    if data is not None:
        full_env["HARNESS_DATA_DIR"] = str(data)
    full_env.update(env or {})
    return full_env


def run_process(
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
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=process_env(data, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_default_sigint,
    )


def start_process(
    *args: str, cwd: Path, data: Path | None = None, env: dict | None = None, base: dict | None = None, **popen
) -> subprocess.Popen:
    """`python -m harness ARGS` started in the background (to signal, kill or watch), with
    `run_process`'s environment (`base`: another starting environment, e.g. a cluster's);
    `popen`: subprocess.Popen's own arguments (stdout, stderr, text, start_new_session, ...)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], cwd=cwd, env=process_env(data, env, base), **popen
    )


def run_cli(
    *args: str, cwd: Path, data: Path | None = None, env: dict | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in this process (harness.cli.commands.main), with its own working
    folder, environment (as `run_process` sets them) and captured standard output and error. What
    a command changes in the process is undone afterwards, as `harness.run` undoes it for a
    notebook (harness/api/isolation.py: generators, torch's threads and flags, loggers, the
    environment), and so are the components and modules it registered. A real process costs 5-7 s
    of imports; `run_process` stays for exit codes, signals, kills, fault points and imports. `timeout` is
    `run_process`'s, accepted so that either runner takes the same call; in this process it is not applied."""
    import contextlib
    import io
    import signal

    from harness.api import isolation
    from harness.cli import commands

    saved_cwd, saved_term = os.getcwd(), signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    with isolation.kept_as_it_was(trains=False), registry_kept():
        try:
            for key in ("MLFLOW_TRACKING_URI", "HARNESS_DATA_DIR"):
                os.environ.pop(key, None)
            # MLflow keeps a store per address for the process's life: no pooled connection stays open
            os.environ["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"] = "NullPool"
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
            signal.signal(signal.SIGTERM, saved_term)
    return subprocess.CompletedProcess(["harness", *args], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def registry_kept():
    """Whatever is registered (components and datasets) or imported from a test's files inside is
    forgotten afterwards."""
    from harness.data import datasets
    from harness.variants import plugins

    kept = [(d, dict(d)) for d in (registry._REGISTRY, plugins._files, datasets._REGISTRY, datasets._FROM)]
    modules = set(sys.modules)
    try:
        yield
    finally:
        for d, before in kept:
            d.clear()
            d.update(before)
        for name in set(sys.modules) - modules:
            if getattr(sys.modules[name], "__file__", "") and "pytest-" in str(sys.modules[name].__file__):
                del sys.modules[name]


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
    not empty' when a file appears between its listing and its rmdir, so delete again until it is
    gone, and fail the test if it never is."""
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


SHAPE = (3, 16, 16)  # the fused loop's tests: images small enough to train eight LeNets in seconds


def tiny_tensors(n_train: int, n_test: int, split: str = "prefix", ratio: float = 0.8) -> loading.DeviceData:
    """Synthetic CIFAR-shaped data (conftest.make_arrays) checked, split and on the CPU, as the runner holds it."""
    a = loading.check(make_arrays(n_train, n_test), "synthetic")
    return loading.to_device(a, loading.make_split(a.y_train, split, ratio, 0), torch.device("cpu"))


def check_refusal(work, proc, fragment, allowed_files):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert {p.name for p in work.iterdir()} == allowed_files  # no store, checkpoint or report


class Exploding(nn.Module):
    def __init__(self, at_step: int):
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 10)
        self.calls, self.at_step = 0, at_step

    def forward(self, x):
        self.calls += self.training
        out = self.lin(x.flatten(1))
        return out * float("nan") if self.training and self.calls >= self.at_step else out


def arrays(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose mean colour depends on the class (learnable in a few epochs), channels-last as the harness keeps them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    rng.shuffle(y)
    base = (y[:, None, None, None] * 23 + np.array([0, 60, 120])[None, :, None, None]) % 256
    x = np.clip(base + rng.normal(0, 60, size=(n, *SHAPE)), 0, 255).astype(np.uint8)
    return torch.from_numpy(x).contiguous(memory_format=torch.channels_last), torch.from_numpy(y).long()


def parts(variant: str):
    """The network builder, engine pieces and settings a shipped variant trains with."""
    v = registry.get(variant)
    change = v.change()
    train = {k: val for c in v.components for k, val in c.train.items()}
    pieces = engine.Pieces(
        **{
            f.name: getattr(change, f.name)
            for f in dataclasses.fields(engine.Pieces)
            if getattr(change, f.name) is not None
        }
    )
    return (lambda: change.build(SHAPE, 10)), pieces, train


WIDE = '''
"""LeNet with a wider first hidden layer (a user's own component, outside the package)."""
from torch import nn

from harness import Change, register


class WideNet(nn.Module):
    def __init__(self, image_shape, num_classes, hidden=240):
        super().__init__()
        c, h, w = image_shape
        self.features = nn.Sequential(nn.Conv2d(c, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        side = lambda n: ((n - 4) // 2 - 4) // 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * side(h) * side(w), hidden), nn.ReLU(), nn.Linear(hidden, 84), nn.ReLU(),
                                  nn.Linear(84, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


@register("{name}", hypothesis="Twice the hidden units raise accuracy without more overfitting.")
def wide(hidden: int = 240):
    return Change(architecture=WideNet, model={{"hidden": hidden}})
'''


def component_file(folder: Path, stem: str, name: str = "wide", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(WIDE.format(name=name) + extra)
    return path


def image_folder(
    root: Path, sizes=((16, 16),), per_class: int = 10, mode: str = "L", classes=("horizontal", "vertical")
) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            stripes = (np.arange(max(h, w)) % 4 < 2) * 200
            x = np.where(c == 0, stripes[:h, None], stripes[None, :w]) + rng.integers(0, 55, (h, w))
            img = Image.fromarray(x.astype(np.uint8), "L")
            (img.convert(mode) if mode != "L" else img).save(root / name / f"{i:03d}.png")
    return root


TEST_ACC = {"baseline": [60.0, 61.0, 59.5], "batchnorm": [64.0, 65.5, 63.0]}  # of 1,000 test images, 100 per class


def confusion(correct: int, per_class: int = 100) -> np.ndarray:
    """A 10-class confusion matrix with `correct` on its diagonal; each class's misses go to the next class."""
    right = [correct // 10 + (1 if c < correct % 10 else 0) for c in range(10)]
    cm = np.zeros((10, 10), dtype=np.int64)
    for c in range(10):
        cm[c, c], cm[c, (c + 1) % 10] = right[c], per_class - right[c]
    return cm


def fake_runs(device: str = "cpu (x86_64)") -> list[SeedRun]:
    runs = []
    for variant, accs in TEST_ACC.items():
        for i, (seed, acc) in enumerate(zip((2021, 2022, 2023), accs)):
            history = {
                "train_acc": [(e, 40.0 + 5 * e + i) for e in (1, 2, 3)],
                "val_acc": [(e, 38.0 + 4 * e + i) for e in (1, 2, 3)],
                "train_loss": [(e, 2.0 - 0.2 * e) for e in (1, 2, 3)],
                "val_loss": [(e, 2.1 - 0.15 * e) for e in (1, 2, 3)],
            }
            cm = confusion(round(acc * 10))
            runs.append(
                SeedRun(
                    f"{variant}{seed}",
                    f"p-{variant}",
                    variant,
                    seed,
                    "FINISHED",
                    1000 + len(runs),
                    {"train.epochs": "3", "train.select": "val_acc"},
                    {
                        "harness.baseline": "baseline",
                        "harness.env.device": device,
                        "harness.device": device,
                        "harness.command": "python -m harness run",
                        "harness.experiment": "fake",
                        "harness.env.torch": "2.14.1",
                    },
                    {
                        "test_acc": acc,
                        "best_val_acc": 50.0 + i,
                        "final_val_acc": 50.0 + i,
                        "final_val_loss": 1.65,
                        "min_val_loss": 1.65,
                        "min_val_loss_epoch": 3.0,
                        "final_gap_acc": 5.0,
                        "n_params": 62006.0,
                        "epoch_seconds_mean": 4.0,
                    },
                    history,
                    cm,
                    CIFAR10_CLASSES,
                )
            )
    runs.append(
        SeedRun(
            "bad",
            "p-batchnorm",
            "batchnorm",
            2024,
            "FAILED",
            2000,
            {"train.epochs": "3"},
            {
                "harness.error": "non-finite loss in batchnorm seed 2024: loss became nan at epoch 2, step 5",
                "harness.env.device": device,
                "harness.device": device,
            },
            {},
            {},
            None,
        )
    )
    return runs


def runs_from(
    correct: dict[str, dict[int, int]], images: int = 10_000, params: dict[str, dict[str, str]] | None = None
) -> list[SeedRun]:
    """Finished runs with these counts of correct test images (of `images`, a tenth per class)."""
    runs = []
    for variant, by_seed in correct.items():
        for seed, k in by_seed.items():
            acc = 100.0 * k / images
            runs.append(
                SeedRun(
                    f"{variant}{seed}",
                    f"p-{variant}",
                    variant,
                    seed,
                    "FINISHED",
                    1000 + len(runs),
                    {"train.epochs": "3", "train.select": "val_acc", **(params or {}).get(variant, {})},
                    {
                        "harness.baseline": "baseline",
                        "harness.split_fingerprint": "f1",
                        "harness.dataset": "cifar10:abc",
                    },
                    {"test_acc": acc},
                    {},
                    confusion(k, images // 10),
                    CIFAR10_CLASSES,
                )
            )
    return runs


BEFORE = Path(__file__).parent / "fixtures" / "reports-before-answer-first"


NUMBER = re.compile(r"(?<![\w.])[+−-]?\d[\d,]*(?:\.\d+)?%?")


def numbers(text: str) -> Counter:
    return Counter(m.group(0).replace("−", "-") for m in NUMBER.finditer(text))


def assert_form(md: str) -> None:
    found = report_tables.tables(md)
    assert found
    for t in found:
        assert len(t.header) <= 8, (t.heading, t.header)
        assert all(len(r) == len(t.header) for r in t.rows), (t.heading, t.header, [len(r) for r in t.rows])
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', md))
    targets = set(re.findall(r"\]\(#([^)]+)\)", md))
    assert targets and targets <= anchors, targets - anchors
    assert len(re.findall(r'<a id="([^"]+)"></a>', md)) == len(anchors)  # each anchor once


def assert_keeps_numbers(old: str, new: str, changed: frozenset[str] = frozenset()) -> None:
    """Every number of the old report appears at least as often in the new one, and each table
    row's numbers in a row of the new report that starts with the same name; `changed`: numbers a
    change of the statistics replaced on purpose (each named where it is passed)."""
    missing = {k: (n, numbers(new)[k]) for k, n in numbers(old).items() if numbers(new)[k] < n and k not in changed}
    assert not missing, missing
    rows: dict[str, Counter] = {}
    for t in report_tables.tables(new):
        for r in t.rows:
            rows.setdefault(r[0], Counter()).update(numbers(" | ".join(r[1:])))
    for t in report_tables.tables(old):
        for r in t.rows:
            lost = set(numbers(" | ".join(r[1:]))) - set(rows.get(r[0], Counter())) - changed
            assert not lost, (t.heading, r[0], lost)


# a fused member may stray from the reference this many times as far as the separate path's own float noise
NOISE_FACTOR = 10


def gap(a: dict, b: dict, skip=()) -> float:
    """The largest absolute difference between two state dicts' floating tensors (but `skip`)."""
    return max(
        ((a[n].double() - b[n].double()).abs().max().item() for n in a if a[n].is_floating_point() and n not in skip),
        default=0.0,
    )


def float_noise(runs: list[tuple[dict, dict]], skip=()) -> float:
    """The separate path's own float noise: the largest gap between two float orders of the same
    runs (pairs of state dicts), over all of them, or one rounding of the largest weight where
    they agree bit for bit."""
    noise = max(gap(a, b, skip) for a, b in runs)
    largest = max(v.abs().max().item() for a, _ in runs for n, v in a.items() if v.is_floating_point())
    return max(noise, torch.finfo(torch.float32).eps * largest)


TINY = ["--epochs", "1", "--set", "train.threads=1"]  # one short epoch on one thread


def copy_of(trained, tmp_path: Path, name: str = "proj") -> Path:
    """A copy of the `trained` fixture's project folder, to change."""
    target = tmp_path / name
    subprocess.run(["cp", "-a", str(trained[1]), str(target)], check=True)
    return target


def store_rows(work: Path, sql: str, args=()) -> list:
    """Rows of the project's SQLite store, read with sqlite3 alone."""
    with sqlite3.connect(work / "mlflow.db") as db:
        return db.execute(sql, args).fetchall()


def looks(diffs, plan=None, analysis=None):
    """The sequential walk over per-seed differences {variant: {seed: diff}}, every seed named tried."""
    from harness.analysis import sequential, stats
    from harness.analysis.sequential import Sequential

    plan = plan or Sequential(3, 12)
    seeds = tuple(range(100, 100 + plan.max_seeds))
    tried = {(v, s) for v in ["baseline", *diffs] for s in seeds if any(s in d for d in diffs.values())}
    return sequential.walk(diffs, tried, "baseline", list(diffs), seeds, plan, analysis or stats.Analysis())


THREE = (100, 101, 102)  # three paired seeds

EXAMPLE = {  # correct test images (of 10,000) per variant and seed: the report tests' example study
    "baseline": {1: 6010, 2: 6100, 3: 5950},
    "dropout": {1: 5890, 2: 5760, 3: 5610},
    "batchnorm": {1: 6230, 2: 6210, 3: 6300},
}


def same_training(a, b) -> bool:
    """Two trainings, each (model, result, ...) as engine.train returns them, ended bit for bit
    alike: every weight, each epoch's losses and validation accuracy, and the selected epoch."""
    (ma, ra), (mb, rb) = a[:2], b[:2]
    sa, sb = ma.state_dict(), mb.state_dict()
    weights = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    history = [(s.train_loss, s.val_loss, s.val_acc) for s in ra.history] == [
        (s.train_loss, s.val_loss, s.val_acc) for s in rb.history
    ]
    return weights and history and ra.selected_epoch == rb.selected_epoch


def store_client(work: Path):
    """An MLflow client of the project's SQLite store (its path quoted, as a URI needs)."""
    from urllib.parse import quote

    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{quote(str(work / 'mlflow.db'), safe='/')}")


def seed_runs(work: Path, experiment: str = "default", every: bool = False) -> list:
    """The experiment's seed runs, live ones (`every`: deleted ones too), by variant, seed and start."""
    from mlflow.entities import ViewType

    c = store_client(work)
    exp = c.get_experiment_by_name(experiment)
    view = ViewType.ALL if every else ViewType.ACTIVE_ONLY
    runs = c.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'", run_view_type=view)
    return sorted(
        runs, key=lambda r: (r.data.tags["harness.variant"], int(r.data.tags["harness.seed"]), r.info.start_time)
    )
