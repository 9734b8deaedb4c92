"""A regular install runs anywhere: the wheel built from this repository, installed into a fresh
environment (which borrows the installed torch, MLflow and the rest, never the checkout), runs the
default experiment from an empty folder, and adds no top-level name to site-packages but `harness`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.helpers import ROOT, write_npz


def _python(env_dir) -> str:
    return str(env_dir / "bin" / "python")


@pytest.mark.slow  # builds a wheel and trains 6 runs in a second environment (about a minute)
def test_the_wheel_installed_in_a_fresh_environment_runs_the_default_experiment_from_an_empty_folder(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "harness", source / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("harness-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"harness", wheel.name.split("-py")[0] + ".dist-info"}
    assert {
        "harness/experiments/default.toml",
        "harness/experiments/tutorial.toml",
        "harness/variants/lenet.py",
    } <= set(names)

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    site = subprocess.run(
        [_python(env_dir), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The installed libraries, as a plain path entry: the .pth files there (the checkout's editable install) are not run.
    (tmp_path / "env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    shutil.move(tmp_path / "env.pth", os.path.join(site, "borrowed.pth"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "HARNESS_DATA_DIR", "VIRTUAL_ENV")
    }
    env["HARNESS_DATA_DIR"] = str(write_npz(tmp_path / "data"))  # the small CIFAR-10 copy of the tests
    where = subprocess.run(
        [_python(env_dir), "-c", "import harness; print(harness.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.stdout.strip() == os.path.join(site, "harness", "__init__.py"), where.stderr
    proc = subprocess.run(
        [_python(env_dir), "-m", "harness", "run", "--variants", "baseline,dropout", "--epochs", "1"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "experiment default: 2 variant(s)" in proc.stdout
    assert (empty / "reports" / "default" / "report.md").is_file() and (empty / "mlflow.db").is_file()
