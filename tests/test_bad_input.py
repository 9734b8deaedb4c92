"""Bad input, through the real CLI: exit code 2, one line naming the field, the value and what is
allowed, no traceback, and nothing created (no store, no checkpoint, no report) before it."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import harness, make_arrays


def _corrupt(kind: str, folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar10.npz"
    a = make_arrays()
    if kind == "shape":
        a["x_train"] = a["x_train"][:, :16]
    elif kind == "dtype":
        a["x_train"] = a["x_train"].astype(np.float32)
    elif kind == "labels":
        a["y_train"] = a["y_train"].copy()
        a["y_train"][3] = 12
    elif kind == "missing_key":
        del a["y_test"]
    elif kind == "classes":
        a["y_train"] = np.zeros_like(a["y_train"])
    np.savez(path, **a)
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return folder


CASES = {
    # name: (extra CLI args, fragment of the one-line error)
    "unknown variant": (["--variants", "dropuot"], "did you mean 'dropout'"),
    "duplicated variant": (["--variants", "baseline,dropout,baseline"], "'baseline' is listed twice"),
    "empty variant list": (["--variants", ""], "variant list is empty"),
    "seed not a number": (["--seeds", "20x1"], "--seeds: '20x1' is not allowed"),
    "negative seed": (["--seeds", "2021,-3"], "seed -3 is not allowed"),
    "duplicated seed": (["--seeds", "5,5"], "seed 5 is listed twice"),
    "zero learning rate": (["--set", "train.lr=0"], "train.lr: 0.0 is not allowed; expected a finite number > 0"),
    "non-finite learning rate": (["--set", "train.lr=nan"], "train.lr: nan is not finite"),
    "negative weight decay": (["--set", "train.weight_decay=-1e-4"], "train.weight_decay: -0.0001 is not allowed"),
    "dropout of 1": (["--variants", "dropout", "--set", "params.dropout.p=1.0"], "dropout must be in [0, 1), got 1.0"),
    "negative dropout": (["--variants", "dropout", "--set", "params.dropout.p=-0.1"], "dropout must be in [0, 1)"),
    "zero batch size": (["--set", "train.batch_size=0"], "train.batch_size: 0 is not allowed"),
    "zero epochs": (["--epochs", "0"], "train.epochs: 0 is not allowed"),
    "epochs not an integer": (["--epochs", "two"], "--epochs: 'two' is not an integer"),
    "missing experiment file": (["--experiment", "no/such.toml"], "does not exist"),
    "unknown setting": (["--set", "train.momentum=0.9"], "train.momentum: unknown setting"),
    "wrong type": (["--set", "train.shuffle=3"], "train.shuffle: expected bool, got int 3"),
    "unknown split": (["--set", "data.split=random"], "data.split: 'random' is not allowed"),
    "unsupported tracking URI": (["--tracking-uri", "ftp://host/store"], "tracking_uri: 'ftp://host/store' is not supported"),
    "CUDA where there is none": (["--device", "cuda"], "CUDA is not available"),
    "unknown precision": (["--set", "train.precision=fp16"], "train.precision: 'fp16' is not allowed; expected one of fp32"),
    "CUDA graphs on a CPU": (["--set", "train.compile=reduce-overhead"], "train.compile: 'reduce-overhead' captures CUDA graphs and needs a CUDA device"),
    "unknown determinism": (["--set", "train.determinism=maybe"], "train.determinism: 'maybe' is not allowed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejected_before_any_work(tmp_path, data_dir, case):
    args, fragment = CASES[case]
    _check(tmp_path, harness("run", *args, cwd=tmp_path, data=data_dir), fragment, {"data"})


FILE_CASES = {
    "empty experiment file": ("   \n", "is empty"),
    "malformed experiment file": ("[train\nepochs = ", "is not valid TOML"),
    "unknown key in experiment file": ("colour = 'red'\n", "colour: unknown setting"),
    "wrong type in experiment file": ("[train]\nepochs = 'ten'\n", "train.epochs: expected int, got str 'ten'"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_experiment_files(tmp_path, data_dir, case):
    text, fragment = FILE_CASES[case]
    (tmp_path / "exp.toml").write_text(text)
    _check(tmp_path, harness("run", "--experiment", "exp.toml", cwd=tmp_path, data=data_dir), fragment, {"data", "exp.toml"})


@pytest.mark.parametrize("kind,fragment", [
    ("shape", "x_train has shape (500, 16, 32, 3); expected (N, 32, 32, 3)"),
    ("dtype", "x_train has dtype float32; expected uint8"),
    ("labels", "y_train holds label 12; expected labels 0..9"),
    ("missing_key", "lacks key 'y_test'"),
    ("classes", "y_train holds 1 classes; expected all 10"),
    ("truncated", "is not a readable .npz file"),
])
def test_corrupt_dataset(tmp_path, kind, fragment):
    data = _corrupt(kind, tmp_path / "data")
    _check(tmp_path, harness("run", cwd=tmp_path, data=data), fragment, {"data"})


def test_unwritable_output_and_checkpoint_dirs(tmp_path, data_dir):
    (tmp_path / "plain-file").write_text("not a folder")
    for setting, field in (("reports_dir", "reports_dir"), ("checkpoint_dir", "checkpoint_dir")):
        proc = harness("run", "--set", f"{setting}='plain-file/out'", cwd=tmp_path, data=data_dir)
        _check(tmp_path, proc, f"{field}: cannot create or write", {"data", "plain-file"})
    proc = harness("run", "--tracking-uri", "sqlite:///plain-file/mlflow.db", cwd=tmp_path, data=data_dir)
    _check(tmp_path, proc, "tracking_uri: cannot write the SQLite store", {"data", "plain-file"})


def test_missing_dataset_names_the_directory(tmp_path):
    proc = harness("run", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    _check(tmp_path, proc, str(tmp_path / "nowhere"), set())
    assert "--data-dir" in proc.stderr and "HARNESS_DATA_DIR" in proc.stderr


def test_debug_shows_the_traceback(tmp_path, data_dir):
    proc = harness("--debug", "run", "--set", "train.lr=0", cwd=tmp_path, data=data_dir)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def _check(work, proc, fragment, allowed_files):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1500:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert {p.name for p in work.iterdir()} == allowed_files  # no store, checkpoint or report
