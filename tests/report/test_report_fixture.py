"""A store written before the code moved into its layers (commit e220f8a) rebuilds the expected
report, byte for byte, through `report` (harness/report), and keeps every number its older reports
printed; the same store shows that `export` (harness/running/stored.py) keeps its text until the
experiment's runs change.

tests/fixtures/store-before-layers.tar.gz holds that store (made with
`run --dataset digits --design factorial --factors dropout,batchnorm --seeds 3 --epochs 2` and
`run --dataset digits --variants baseline,dropout --seeds auto --max-seeds 5 --epochs 2`, CPU; the
artifacts the report does not read, models, weights and per-run plots, taken out to keep it
small), the expected report.md of each experiment and the names of the files beside it. The store
sits elsewhere here than where it was written, so the rebuild also shows that artifacts follow a
moved store. The ondemand store's design was started before rules were recorded, so it replays
under rule 1.

A change that means to change the report (new statistics, new wording) updates the expected files
in the archive in the same commit and says so; a change that does not mean to must leave this test
passing. tests/fixtures/reports-before-answer-first holds the reports of the same stores in the
report's older form: every number they print must still be in the rebuilt report, and a change
that moves a number must list it in `CHANGED`, with the reason beside it.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.helpers import BEFORE, assert_form, assert_keeps_numbers, run_cli, run_process

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store-before-layers.tar.gz"


@pytest.mark.parametrize("experiment", ["factorial", "ondemand"])
def test_a_store_from_before_the_move_rebuilds_the_same_report(tmp_path, experiment):
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    out = run_cli("report", "--experiment", experiment, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    expected = tmp_path / "expected" / experiment
    built = tmp_path / "reports" / experiment
    assert (built / "report.md").read_bytes() == (expected / "report.md").read_bytes()
    assert sorted(p.name for p in built.iterdir()) == (expected / "files.txt").read_text().split()
    md = (built / "report.md").read_text()
    assert_form(md)
    assert_keeps_numbers((BEFORE / f"{experiment}.md").read_text(), md, CHANGED.get(experiment, frozenset()))


# The numbers of the older reports that the statistics replace on purpose; every other number is
# kept. The difference and equivalence tests are one Holm family (stats.paired_holm), so the factorial
# store's batchnorm and batchnorm+dropout Holm p 0.948 are 1.000, and its effects' Holm p 0.797
# (batchnorm, batchnorm × dropout) are 1.000. The seeds × images interval takes the place of the
# crossed bootstrap (4000 replicates): its variance counts the seed × image interaction once and it
# is never narrower than the seeds' own t interval, so factorial [−33.91, 50.74], [−19.26, 3.99],
# [−38.88, 43.81] are the seed intervals [−32.97, 49.81], [−15.18, −0.09], [−37.69, 42.63], and
# ondemand's [−16.23, −1.28] is [−14.08, −3.43] (at 3 and 4 seeds on these digits, the images add
# less than the seeds' t quantile).
CHANGED = {
    "factorial": frozenset({"0.948", "0.797", "4000", "-33.91", "50.74", "-19.26", "3.99", "-38.88", "43.81"}),
    "ondemand": frozenset({"4000", "-16.23", "-1.28"}),
}


def _imported(proc, module: str) -> bool:
    """Whether a process run with PYTHONPROFILEIMPORTTIME=1 imported `module`."""
    return any(
        line.startswith("import time:") and line.split("|")[-1].strip() == module for line in proc.stderr.splitlines()
    )


def test_an_export_of_an_unchanged_store_is_kept_and_read_without_mlflow_until_the_store_changes(tmp_path):
    """`export` keeps its text under a digest of the experiment's rows in the store (harness/running/stored.py):
    the same export again imports neither MLflow nor SciPy, a refusal never does, and any change of
    the experiment's runs is seen."""
    from mlflow import MlflowClient

    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPROFILEIMPORTTIME": "1"}
    argv = ("export", "--experiment", "factorial", "--table", "comparison", "--format", "csv")
    tries = [run_process(*argv, cwd=tmp_path, env=env) for _ in range(3)]
    assert all(t.returncode == 0 for t in tries), tries[0].stderr[-2000:]
    assert tries[0].stdout == tries[1].stdout == tries[2].stdout
    assert _imported(tries[0], "mlflow") and _imported(tries[0], "scipy")
    # the first read moved the artifact locations to where the store now is, so the second read again
    assert not _imported(tries[2], "mlflow") and not _imported(tries[2], "scipy") and not _imported(tries[2], "torch")

    refusal = run_process(
        "export", "--experiment", "ondemand", "--table", "effects", "--format", "csv", cwd=tmp_path, env=env
    )
    assert refusal.returncode == 2 and "has a list design" in refusal.stderr.splitlines()[-1]
    assert not any(_imported(refusal, m) for m in ("mlflow", "scipy", "torch", "pandas"))

    # an artifact the tables read (a run's confusion matrix) changed under the store: read again
    matrix = next(tmp_path.glob("mlartifacts/factorial/*/artifacts/confusion_matrix.csv"))
    matrix.write_text(matrix.read_text())
    os.utime(matrix, ns=(1, 1))
    touched = run_process(*argv, cwd=tmp_path, env=env)
    assert touched.returncode == 0 and _imported(touched, "mlflow") and touched.stdout == tries[0].stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("factorial").experiment_id
    seed_run = client.search_runs(
        [experiment], "tags.`harness.variant` = 'batchnorm' and tags.`harness.role` = 'seed'"
    )[0]
    client.delete_run(seed_run.info.run_id)
    changed = run_process(*argv, cwd=tmp_path, env=env)
    assert changed.returncode == 0 and _imported(changed, "mlflow")
    assert "batchnorm,2," in changed.stdout and "batchnorm,3," in tries[0].stdout
