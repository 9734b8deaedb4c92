"""Seeds on demand through the real CLI and store (the rounds of harness/running/runner.py and
units.py, the report's section in harness/report/sequential_section.py): the rounds, the report, a
rerun that trains nothing, resuming after a kill inside a round and between rounds, a variant whose
run fails on one seed, a variant identical to the baseline left open at round 1, and a rerun that
changes the stored design (max_seeds, the margin, fixed seeds) refused unless `--redesign`, which
the report discloses."""

from __future__ import annotations

import io
import re

import pytest

from harness.running import runner as runner_mod
from tests import faultkit
from tests.helpers import fresh_store, run_cli, run_process, write_npz

# dropout at p = 0 trains exactly like the baseline: every pair differs by 0, a look without spread,
# which only the sign-flip route may decide and 6 pairs at Holm's levels cannot (never "equivalent"
# at round 1 from t = inf); weight decay 0.3 leaves the network at chance (worse, once enough seeds
# show it); batchnorm stays unclear for 6 seeds.
ARGS = [
    "run",
    "--variants",
    "baseline,dropout,batchnorm,weight_decay",
    "--seeds",
    "auto",
    "--max-seeds",
    "6",
    "--epochs",
    "3",
    "--set",
    "params.dropout.p=0",
    "--set",
    "params.weight_decay.weight_decay=0.3",
    "--set",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    work = tmp_path_factory.mktemp("reference")
    fresh_store(work)
    proc = run_cli(*ARGS, cwd=work, data=data)
    assert proc.returncode == 0, proc.stderr
    return work, proc


def finished(work) -> dict[tuple[str, int], float]:
    return {
        (r.data.tags["harness.variant"], int(r.data.tags["harness.seed"])): r.data.metrics["test_acc"]
        for r in faultkit.seed_runs(work)
        if r.info.status == "FINISHED"
    }


def decisions(work) -> str:
    """The report's table of seeds and verdicts."""
    text = (work / "reports" / "default" / "report.md").read_text()
    return text[text.index("## Seeds on demand") : text.index("Rounds:")]


@pytest.mark.slow
def test_clear_comparisons_stop_and_unclear_ones_go_on_to_the_budget(reference):
    work, proc = reference
    rounds = [line for line in proc.stdout.splitlines() if line.startswith("round ")]
    assert rounds[0].startswith("round 1 (seeds 2021–2023): dropout open (Δ +0.00 (−∞, +∞) (repeated 99.2% CI)); "), (
        rounds
    )
    assert "inf ≥" not in proc.stdout
    assert (
        rounds[-1].startswith("round 4 (seeds 2021–2026): ")
        and "batchnorm inconclusive (budget of 6 seeds spent)" in rounds[-1]
    )
    assert "dropout inconclusive (budget of 6 seeds spent)" in rounds[-1]
    worse = next(line for line in rounds if "weight_decay worse" in line)
    # the sequential statistic, not a fixed-sample p
    assert "weight_decay worse (|t| " in worse and " ≥ boundary " in worse
    runs = finished(work)
    seeds = {v: sorted(s for (u, s) in runs if u == v) for v in ("baseline", "dropout", "batchnorm", "weight_decay")}
    assert (
        seeds["dropout"] == seeds["baseline"] == seeds["batchnorm"] == seeds["weight_decay"] == list(range(2021, 2027))
    )
    assert worse == rounds[-1]  # weight decay's harm is shown at the last look, by its t statistic
    table = decisions(work)
    assert "| dropout | 6 | 4 | **inconclusive** | +0.00 (6) | (−∞, +∞) (repeated " in table
    assert "| batchnorm | 6 | 4 | **inconclusive** |" in table
    used = len(runs)
    assert f"{used} runs trained (the baseline included) where a fixed 6 seeds would train 24" in table
    report = (work / "reports" / "default" / "report.md").read_text()
    assert (
        "![interval narrowing](sequential_intervals.png)" in report
        and (work / "reports" / "default" / "sequential_intervals.png").stat().st_size
    )
    assert "Maurer, W. & Bretz, F. (2013)" in report
    assert "- `dropout`: **inconclusive**, decided by the seeds-on-demand rule (budget of 6 seeds spent)" in report
    # the statistics table carries the rule's verdict
    assert re.search(r"\| weight_decay \|[^\n]*\*\*worse\*\* \|", report.split("## Seeds on demand")[0])


@pytest.mark.slow
def test_rerunning_a_finished_design_trains_nothing_and_rebuilds_the_same_report(reference, data):
    work, _ = reference
    before = (work / "reports" / "default" / "report.md").read_text()
    proc = run_cli(*ARGS, cwd=work, data=data)
    assert proc.returncode == 0, proc.stderr
    assert "TRAIN EPOCH" not in proc.stdout and proc.stdout.count("skip ") == len(finished(work))
    assert (work / "reports" / "default" / "report.md").read_text() == before
    rebuilt = run_cli("report", "--experiment", "default", cwd=work)
    assert rebuilt.returncode == 0 and (work / "reports" / "default" / "report.md").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize("fault,code", [("step:150:KILL", -9), ("round:2:KILL", -9), ("round:3:TERM", 143)])
def test_a_killed_design_resumes_where_it_was(tmp_path, data, reference, fault, code):
    """Killed inside round 1, after round 1 (before round 2 trains) or after round 2: the same command finishes it as if never stopped."""
    fresh_store(tmp_path)
    proc = run_process(*ARGS, cwd=tmp_path, data=data, env={"HARNESS_FAULT": fault})
    assert proc.returncode == code, proc.stderr
    if fault.startswith("round:2"):
        # round 1 complete, nothing of round 2
        assert len(finished(tmp_path)) == 12 and "round 1 (seeds 2021–2023)" in proc.stdout
    proc = run_cli(*ARGS, cwd=tmp_path, data=data)
    assert proc.returncode == 0, proc.stderr
    assert finished(tmp_path) == finished(reference[0])
    assert decisions(tmp_path) == decisions(reference[0])


def test_a_variant_failing_on_one_seed_goes_on_with_the_pairs_it_has(tmp_path, monkeypatch):
    """batchnorm's run of seed 2022 raises: it is recorded FAILED, its look at round 1 has 2 pairs, and the rounds go on."""
    from harness.data import datasets
    from harness.data import loading as data_mod
    from harness.report import sequential_section
    from harness.running import preflight
    from harness.running.console import Console
    from harness.settings import experiment_file
    from harness.tracking import experiment_tags, readback

    folder = write_npz(tmp_path / "data", **{})
    fresh_store(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = experiment_file.load_experiment(
        None,
        [
            f"data.dir='{folder}'",
            "train.epochs=1",
            "train.threads=1",
            "seeds='auto'",
            "max_seeds=4",
            "variants=['baseline', 'batchnorm']",
            # absolute: MLflow caches a store by its address, and another in-process test of this worker may
            # have used the relative sqlite:///mlflow.db in its own folder
            f"tracking_uri='sqlite:///{tmp_path / 'mlflow.db'}'",
        ],
    )
    uri, device = preflight.check(cfg)
    loaded = data_mod.load_split(
        data_mod.read_source(datasets.get("cifar10"), folder), cfg.data.split, cfg.data.train_ratio, 0, device
    )
    from harness.running import units

    fit = units._fit

    def failing(place, trained, *args):  # the innermost call of a unit's lifecycle
        if any(m.pair == ("batchnorm", 2022) for m in trained):
            raise RuntimeError("out of memory (injected)")
        return fit(place, trained, *args)

    monkeypatch.setattr(units, "_fit", failing)
    out = io.StringIO()
    outcomes = runner_mod.Runner(cfg, loaded, uri, device, Console(out)).run_all()
    states = {(o.variant, o.seed): o.status for o in outcomes}
    assert states[("batchnorm", 2022)] == "FAILED" and sum(s == "FINISHED" for s in states.values()) == len(states) - 1
    assert "FAILED batchnorm seed 2022: RuntimeError: out of memory (injected)" in out.getvalue()
    rounds = [line for line in out.getvalue().splitlines() if line.startswith("round ")]
    assert rounds and rounds[0].startswith("round 1 (seeds 2021–2023): ")
    assert (
        len(rounds) == 2
        or "batchnorm better" in rounds[0]
        or "batchnorm worse" in rounds[0]
        or "equivalent" in rounds[0]
    )
    tags = {"harness.sequential": experiment_tags.sequential_tag(cfg)}
    replayed = sequential_section.replay(tags, readback.read_runs(uri, cfg.name), cfg.analysis)
    looks = replayed[1].tracks["batchnorm"].looks
    assert looks[0].n == 2 and replayed[1].next == []


def project(tmp_path):
    """Synthetic data and an empty project folder with a fresh store: (data, work)."""
    data = write_npz(tmp_path / "d")
    work = tmp_path / "w"
    work.mkdir()
    fresh_store(work)
    return data, work


@pytest.mark.slow
def test_run_seeds_auto_on_a_variant_identical_to_the_baseline_does_not_decide_in_round_one(tmp_path):
    data, work = project(tmp_path)
    proc = run_cli(
        "run",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "auto",
        "--max-seeds",
        "4",
        "--epochs",
        "1",
        "--set",
        "params.dropout.p=0",
        "--set",
        "train.threads=1",
        cwd=work,
        data=data,
    )
    assert proc.returncode == 0, proc.stderr
    rounds = [line for line in proc.stdout.splitlines() if line.startswith("round ")]
    assert rounds[0].startswith("round 1 (seeds 2021–2023): dropout open (Δ +0.00 (−∞, +∞)"), rounds
    assert "inf ≥" not in proc.stdout and "dropout inconclusive (budget of 4 seeds spent)" in rounds[-1]


@pytest.mark.slow
def test_a_rerun_that_changes_a_stored_sequential_setting_exits_2_and_names_it(tmp_path):
    data, work = project(tmp_path)
    args = ["run", "--variants", "baseline,dropout", "--seeds", "auto", "--epochs", "1", "--set", "train.threads=1"]
    first = run_cli(*args, "--max-seeds", "3", cwd=work, data=data)
    assert first.returncode == 0, first.stderr
    more = run_cli(*args, "--max-seeds", "5", cwd=work, data=data)
    assert more.returncode == 2 and more.stderr.strip().splitlines()[-1].startswith(
        "error: max_seeds: 5 differs from the seeds-on-demand design experiment 'default' started with (max_seeds = 3)"
    )
    margin = run_cli(*args, "--max-seeds", "3", "--margin", "1.0", cwd=work, data=data)
    assert (
        margin.returncode == 2
        and "analysis.margin: 1.0 differs" in margin.stderr
        and "(analysis.margin = 0.5)" in margin.stderr
    )
    same = run_cli(*args, "--max-seeds", "3", cwd=work, data=data)
    assert same.returncode == 0, same.stderr
    allowed = run_cli(*args, "--max-seeds", "4", "--redesign", cwd=work, data=data)
    assert allowed.returncode == 0, allowed.stderr
    report = (work / "reports" / "default" / "report.md").read_text()
    assert "**The design was changed after it started** (`--redesign`): max_seeds 3 → 4." in report
    # fixed seeds on the same experiment would reuse its pairs outside the rule (5.07% false verdicts become 6.83%)
    fixed_args = ["run", "--variants", "baseline,dropout", "--seeds", "4", "--epochs", "1", "--set", "train.threads=1"]
    fixed = run_cli(*fixed_args, cwd=work, data=data)
    assert fixed.returncode == 2 and fixed.stderr.strip().splitlines()[-1].startswith(
        "error: seeds: experiment 'default' was started with seeds on demand (3 to 4 seeds, first seed 2021); "
        "fixed seeds (2021,2022,2023,2024) would reuse its pairs outside the rule"
    )
    disclosed = run_cli(*fixed_args, "--redesign", cwd=work, data=data)
    assert disclosed.returncode == 0, disclosed.stderr
    report = (work / "reports" / "default" / "report.md").read_text()
    assert "its last `run --redesign` analysed it with fixed seeds (2021,2022,2023,2024)" in report
