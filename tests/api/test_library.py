"""The command line sits on the library: `python -m harness run` and `harness.run(...)` call the same
functions (harness/running/experiment.py), so the same study through either leaves the same runs in
the store and the same report, and the API never goes through the CLI."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import fresh_store, run_cli, run_process

STUDY = [
    "--variants",
    "baseline,dropout",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--dataset",
    "digits",
    "--set",
    "train.batch_size=64",
]
CALL = "harness.run(variants='baseline,dropout', seeds=2, epochs=1, dataset='digits', batch_size=64)"
TIMES = ("epoch_seconds", "epoch_seconds_mean", "train_seconds", "wall_seconds", "test_seconds")


def _store(folder) -> dict:
    """Every run of the store: (variant, seed) -> its params, its metrics but the times, its status."""
    db = sqlite3.connect(folder / "mlflow.db")
    runs = {}
    for run_id, status in db.execute("select run_uuid, status from runs"):
        tags = dict(db.execute("select key, value from tags where run_uuid = ?", (run_id,)))
        params = dict(db.execute("select key, value from params where run_uuid = ?", (run_id,)))
        metrics = {
            (k, s): v
            for k, s, v in db.execute("select key, step, value from metrics where run_uuid = ?", (run_id,))
            if "seconds" not in k and "images_per_second" not in k
        }
        runs[(tags.get("harness.variant"), tags.get("harness.seed"), tags.get("harness.role", "seed"))] = (
            params,
            metrics,
            status,
        )
    db.close()
    return runs


def _report(folder) -> str:
    """report.md without what differs between two commands: the seconds per epoch, the compute the
    Methods paragraph sums from them, the command itself and the MLflow run ids."""
    text = (folder / "reports" / "default" / "report.md").read_text()
    text = re.sub(r"`[0-9a-f]{32}`", "`RUN`", text)
    text = re.sub(r"(\| [\d,]+ \| )[\d.]+( \|)$", r"\1S\2", text, flags=re.M)  # the loss table's s / epoch column
    text = re.sub(r"Compute: .*? \(training epochs only\)\.", "Compute: T.", text)
    return re.sub(r"Command\(s\):\n\n    .*\n", "Command(s): C\n", text)


# slow group: three real processes train and report the same study (about 45 s)
@pytest.mark.slow
def test_the_same_study_through_the_cli_and_through_harness_run_leaves_the_same_store_and_report(tmp_path):
    cli, api = tmp_path / "cli", tmp_path / "api"
    for folder in (cli, api):
        folder.mkdir()
        fresh_store(folder)
    proc = run_process("run", *STUDY, cwd=cli)
    assert proc.returncode == 0, proc.stderr
    code = (
        f"import harness, sys; study = {CALL}; print('PLAN'); print(study.plan(sd=1.0)); print('PLAN'); "
        "v = study.promote('dropout', name='m'); print('VERSION', v.version, v.tags['harness.verdict']); "
        "print('harness.cli' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=api, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "False"  # the API ran without importing the command line
    ran_cli, ran_api = _store(cli), _store(api)
    assert len(ran_cli) == 6 and set(ran_cli) == set(ran_api)  # 2 parents, 4 seed runs
    assert ran_cli == ran_api
    assert _report(cli) == _report(api)
    commands = {p.read_text().count(CALL) for p in api.glob("reports/default/report.md")}
    assert commands == {1}  # the API's runs record the call, not `python -c`

    # `plan` and `promote`: one library function each
    plan = run_process("plan", "--experiment", "default", "--sd", "1", cwd=cli)
    assert plan.returncode == 0 and out.stdout.split("PLAN\n")[1] == plan.stdout
    promoted = run_process("promote", "--experiment", "default", "--variant", "dropout", "--name", "m", cwd=cli)
    verdict = promoted.stdout.split("verdict ")[1].split(";")[0]
    assert promoted.returncode == 0 and f"VERSION 1 {verdict}\n" in out.stdout


@pytest.mark.slow  # two tuning sessions in subprocesses (about 40 s): the default suite stays within its time
def test_harness_tune_and_the_cli_run_one_session_and_share_its_study(tmp_path):
    """`harness.tune` calls the session the CLI's `tune` calls: two trials from Python, then the CLI
    brings the same study (same name, same storage) to three, and both write the best parameters."""
    fresh_store(tmp_path)
    code = (
        "import harness, sys; t = harness.tune('baseline', trials=2, epochs=1, dataset='digits', batch_size=64); "
        "print(len(t.study.trials), t.params_path, 'harness.cli' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "2 reports/default/tuning/baseline.toml False"
    flags = [
        "--variant",
        "baseline",
        "--trials",
        "3",
        "--epochs",
        "1",
        "--set",
        'data.dataset="digits"',
        "--set",
        "train.batch_size=64",
    ]
    proc = run_process("tune", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "study default-baseline: 2 trial(s) so far, 1 to run" in proc.stdout
    assert (tmp_path / "reports" / "default" / "tuning" / "baseline.toml").is_file()


BROKEN = """
from torch import nn
from harness import Change, register


class Broken(nn.Module):
    def __init__(self, image_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(1, num_classes)

    def forward(self, x):
        raise RuntimeError("boom")


@register("broken", hypothesis="It fails.")
def broken():
    return Change(architecture=Broken)
"""


def test_harness_run_raises_where_the_cli_exits_1_and_carries_the_study(tmp_path):
    """A run that fails makes `harness.run` raise RunsFailed (with the Study of what finished), as the
    CLI exits 1; `check=False` returns the Study. Outside a notebook (here: piped) the console prints
    plain lines, no progress-bar frames."""
    fresh_store(tmp_path)
    (tmp_path / "broken.py").write_text(BROKEN)
    code = (
        "import harness\n"
        "kw = dict(variants='baseline,broken', seeds=1, epochs=1, dataset='digits', batch_size=64, components='broken.py')\n"
        "try:\n"
        "    harness.run(**kw)\n"
        "except harness.RunsFailed as e:\n"
        "    print('RAISED', e.failed, e.study.table().variant.tolist())\n"
        "study = harness.run(check=False, **kw)\n"
        "print('RETURNED', study.experiment)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    raised = next(line for line in out.stdout.splitlines() if line.startswith("RAISED"))
    failed = "broken seed 2021: FAILED (RuntimeError: boom (broken.py, line 12, in forward))"  # the user's own line
    assert failed in raised and raised.endswith("['baseline', 'broken']"), raised
    assert "RETURNED default" in out.stdout and "\r" not in out.stdout
    cli = run_cli(
        "--debug",
        "run",
        "--variants",
        "baseline,broken",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--dataset",
        "digits",
        "--set",
        "train.batch_size=64",
        "--components",
        "broken.py",
        cwd=tmp_path,
    )
    assert cli.returncode == 1
    assert "FAILED broken seed 2021: RuntimeError: boom (broken.py, line 12, in forward)" in cli.stdout
    assert "Traceback (most recent call last)" in cli.stdout  # --debug: the whole traceback on the console
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("default").experiment_id], "tags.`harness.variant` = 'broken'"
    )
    seeds = [r for r in runs if r.data.tags.get("harness.role") == "seed"]
    assert seeds and all(r.info.status == "FAILED" for r in seeds)
    text = Path(client.download_artifacts(seeds[0].info.run_id, "error.txt", str(tmp_path))).read_text()
    assert text.startswith("Traceback") and 'raise RuntimeError("boom")' in text
    assert {r.info.status for r in runs if r.data.tags.get("harness.role") == "variant"} == {"FINISHED"}


def test_the_api_leaves_its_callers_process_as_it_found_it(tmp_path, monkeypatch):
    """harness.run leaves the root logger's and the caller's loggers' levels, the generators'
    states, cudnn's settings, the threads, the environment (MLflow's variables) and the warning
    filters as it found them; a one-item list of variants is taken."""
    import logging
    import os
    import random
    import warnings

    import numpy as np
    import torch

    import harness
    from tests.helpers import write_npz

    monkeypatch.chdir(tmp_path)
    fresh_store(tmp_path)
    write_npz(tmp_path / "data")
    mine = logging.getLogger("the_callers_own")
    logging.root.setLevel(logging.INFO)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)

    def state() -> dict:
        return {
            "root": logging.root.level,
            "mine": (mine.level, mine.disabled),
            "env": dict(os.environ),
            "filters": list(warnings.filters),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
            "threads": torch.get_num_threads(),
        }

    before = state()
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # absolute: MLflow caches stores by address, per process
    harness.run(
        variants=["baseline"],
        seeds=[3],
        epochs=1,
        data_dir="data",
        batch_size=64,
        threads=1,
        device="cpu",
        tracking_uri=store,
    )
    after = state()
    assert after == before
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected
    assert harness.load("default", tracking_uri=store).table().variant.tolist() == ["baseline"]
    assert logging.root.level == logging.INFO


def test_a_long_study_says_its_size_and_about_how_long_before_it_starts(tmp_path, monkeypatch):
    """A long study (the headline `--seeds 5` trains 100 epochs per run, hours on a CPU) says its
    size and about how long it trains before it starts; a short one says nothing more."""
    from harness.running import experiment, preflight
    from tests.helpers import write_npz

    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "data")
    cfg, _ = experiment.configure(
        None, ["train.batch_size=64"], [], [], False, variants=("baseline", "dropout"), **{"data.dir": "data"}
    )
    ready = preflight.prepare(cfg)
    monkeypatch.setattr(experiment, "LONG_SECONDS", 1e9)
    assert experiment._estimate(cfg, ready) == ""  # a short study says nothing more
    monkeypatch.setattr(experiment, "LONG_SECONDS", 1e-9)
    line = experiment._estimate(cfg, ready)
    assert re.fullmatch(
        r"size: 2 runs × 100 epochs; about \S+ of training on cpu \(\d+ ms a step of baseline; fused groups and "
        r"finished runs take less\)\. --epochs or fewer --seeds to shorten; Ctrl-C keeps what finished",
        line,
    ), line
