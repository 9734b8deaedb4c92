"""The command line end to end (harness/cli/commands.py and the commands it runs; in the test
process, or a real `python -m harness` where the process is what is checked), with a real SQLite
MLflow store and real files: `run`'s console lines, store,
figures and report; `list` and `--help` starting without torch or MLflow, and `list`'s cache; the
exports a run keeps; unknown components refused from saved names; `--jobs-per-device`; one Holm
family across invocations and variants that are not comparable; `plan`; artifacts that follow a
moved project folder; `report` of the store an experiment file names; and refusals that are one
line and exit 2."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from mlflow import MlflowClient

from tests.helpers import (
    ROOT,
    check_refusal,
    component_file,
    fresh_store,
    run_cli,
    run_process,
    write_npz,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One end-to-end run: two variants, two seeds, two epochs, on synthetic data, each run with its figures."""

    work = tmp_path_factory.mktemp("work")
    data = write_npz(work / "data")
    proc = run_cli(
        "run",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "2021,2022",
        "--epochs",
        "2",
        "--set",
        "train.batch_size=64",
        "--set",
        "train.run_figures=true",
        cwd=work,
        data=data,
    )
    return work, data, proc


def test_run_prints_the_tutorials_lines_and_a_summary(finished):
    work, _, proc = finished
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "TRAIN EPOCH[001/002] ITR [0007/0007] LOSS:" in out
    assert "VAL   EPOCH[002/002]" in out
    assert "4 of 4 runs finished" in out
    assert "best val acc" in out and "epoch of best" in out


def test_piped_output_is_plain_lines_with_the_eta_at_the_end_of_each_run(finished):
    out = finished[2].stdout
    # no \r, no escape codes
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", out), "control characters in piped output"
    runs = [line for line in out.splitlines() if line.startswith("finished ")]
    assert len(runs) == 4 and all(
        re.fullmatch(r"finished \w+ seed \d+ in \d+s: test accuracy [\d.]+ \[\d/4 runs; ETA \w+\]", r) for r in runs
    ), runs
    assert runs[-1].endswith("[4/4 runs; ETA 0s]")
    # one line per phase and epoch
    assert sum(line.startswith(("TRAIN EPOCH", "VAL   EPOCH")) for line in out.splitlines()) == 4 * 2 * 2


def test_store_holds_parents_children_tags_and_epoch_metrics(finished):
    work, _, _ = finished
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("harness.role") == "variant"]
    children = [r for r in runs if r.data.tags.get("harness.role") == "seed"]
    assert sorted(p.data.tags["harness.variant"] for p in parents) == ["baseline", "dropout"]
    assert len(children) == 4
    for c in children:
        assert c.info.status == "FINISHED"
        tags = c.data.tags
        parent = next(p for p in parents if p.info.run_id == tags["mlflow.parentRunId"])
        assert parent.data.tags["harness.variant"] == tags["harness.variant"]
        for key in (
            "harness.split_fingerprint",
            "harness.config_hash",
            "harness.env.torch",
            "harness.device",
            "harness.seed",
        ):
            assert tags[key]
        assert c.data.params["train.epochs"] == "2" and c.data.params["seed"] == tags["harness.seed"]
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert [m.step for m in client.get_metric_history(c.info.run_id, key)] == [1, 2]
        assert "test_acc" in c.data.metrics and "test_acc_last" in c.data.metrics
        names = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert {"config.toml", "confusion_matrix.csv", "per_class.csv"} <= names
        assert {"learning_curves.png", "confusion_matrix.png"} <= names  # train.run_figures
    for p in parents:
        m = p.data.metrics
        assert m["n_seeds"] == 2
        kids = [c.data.metrics["test_acc"] for c in children if c.data.tags["mlflow.parentRunId"] == p.info.run_id]
        assert m["test_acc_mean"] == pytest.approx(sum(kids) / 2)
        assert "test_acc_std" in m and "test_acc_ci_low" in m and "test_acc_ci_high" in m


def test_report_has_a_row_per_variant_and_rebuilds_identically(finished):
    work, _, _ = finished
    report = work / "reports" / "default" / "report.md"
    text = report.read_text()
    assert "| baseline | 2/2 |" in text and "| dropout | 2/2 |" in text
    for png in ("learning_curves.png", "test_accuracy.png", "baseline_difference.png", "confusion_matrices.png"):
        assert (report.parent / png).exists()
    before = {p.name: p.read_bytes() for p in report.parent.iterdir()}
    proc = run_cli("report", "--experiment", "default", cwd=work)
    assert proc.returncode == 0, proc.stderr
    after = {p.name: p.read_bytes() for p in report.parent.iterdir()}
    assert before == after


def test_list_prints_variants_with_parameter_counts(tmp_path):
    proc = run_cli("list", cwd=tmp_path, env={"HARNESS_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0
    assert "baseline" in proc.stdout and "62,006" in proc.stdout and "p=0.5" in proc.stdout


def _imports_torch(proc) -> bool:
    """Whether a process run with PYTHONPROFILEIMPORTTIME=1 imported torch."""
    return any(
        line.startswith("import time:") and line.split("|")[-1].strip() == "torch" for line in proc.stderr.splitlines()
    )


def test_the_exports_a_run_keeps_are_what_a_fresh_export_prints(finished, tmp_path):
    """`run` keeps every table in every format for `export` (harness/running/stored.py): the export
    after it reads no runs (MLflow not imported) and prints what an export with an empty cache prints."""
    work = finished[0]
    for table, fmt in (("comparison", "csv"), ("statistics", "latex"), ("runs", "json")):
        argv = ("export", "--experiment", "default", "--table", table, "--format", fmt)
        kept = run_process(*argv, cwd=work, env={"PYTHONPROFILEIMPORTTIME": "1"})
        fresh = run_process(*argv, cwd=work, env={"HARNESS_CACHE_DIR": str(tmp_path / table)})
        assert kept.returncode == fresh.returncode == 0, kept.stderr[-2000:] + fresh.stderr[-2000:]
        assert kept.stdout == fresh.stdout and kept.stdout.strip()
        imported = {line.split("|")[-1].strip() for line in kept.stderr.splitlines() if line.startswith("import time:")}
        assert "mlflow" not in imported and "scipy" not in imported, table


def test_an_unknown_component_is_refused_without_torch_once_a_command_has_seen_the_variants(tmp_path):
    """Before any command has resolved the shipped variants, the refusal comes from the registry
    (importing torch); once one has (here a `run` that gets as far as its data), the same refusal
    comes from the names it saved (harness/cli/listing.py), torch never imported. A `--components`
    file is never judged from saved names: its names may depend on code the key does not cover."""
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPROFILEIMPORTTIME": "1"}
    argvs = (["--variants", "nosuch"], ["--variants", "baseline,drpout+batchnorm"])
    first = [run_process("run", *argv, cwd=tmp_path, env=env) for argv in argvs]
    assert all(_imports_torch(p) for p in first)
    resolved = run_process(
        "run", "--variants", "baseline", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path, env=env
    )
    assert resolved.returncode == 2 and "nowhere" in resolved.stderr
    for argv, before in zip(argvs, first):
        again = run_process("run", *argv, cwd=tmp_path, env=env)
        assert before.returncode == again.returncode == 2
        line = before.stderr.splitlines()[-1]
        assert line.startswith("error: variants: unknown component") and again.stderr.splitlines()[-1] == line
        assert "components: augment, baseline, batchnorm" in line
        assert not _imports_torch(again)
    assert "(did you mean 'dropout'?)" in line
    mine = component_file(tmp_path / "mine", "mine", name="mine")
    with_file = run_process("run", "--components", str(mine), "--variants", "nosuch", cwd=tmp_path, env=env)
    assert with_file.returncode == 2 and "unknown component 'nosuch'" in with_file.stderr
    assert _imports_torch(with_file)  # the registry, with the file loaded, decides


def test_list_reads_its_cache_without_importing_torch_until_a_variant_file_changes(tmp_path):
    # a copy to edit, first on the path
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(tmp_path), "PYTHONPROFILEIMPORTTIME": "1"}
    first = run_process("list", cwd=tmp_path, env=env)
    second = run_process("list", cwd=tmp_path, env=env)
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout and "62,006" in second.stdout
    assert _imports_torch(first) and not _imports_torch(second)
    (tmp_path / "harness" / "variants" / "wide.py").write_text(
        "from torch import nn\n"
        "from harness.variants.registry import Change, register\n\n\n"
        "def tiny(image_shape, num_classes):\n"
        "    return nn.Linear(10, 10)\n\n\n"
        "@register('wide', hypothesis='A wider head.')\n"
        "def wide():\n"
        "    return Change(architecture=tiny)\n"
    )
    init = tmp_path / "harness" / "variants" / "__init__.py"
    init.write_text(init.read_text() + "from harness.variants import wide  # noqa: E402,F401\n")
    third = run_process("list", cwd=tmp_path, env=env)
    assert third.returncode == 0 and _imports_torch(third)
    assert re.search(r"\nwide +110 +architecture tiny ", third.stdout) and "A wider head." in third.stdout


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["run", "--variants", "dropuot"], "did you mean 'dropout'"),
        (["run", "--variants", ","], "empty"),
        (["run", "--seeds", "1,1"], "listed twice"),
        (["run", "--epochs", "0"], "train.epochs"),
        (["run", "--set", "train.lr=-1"], "train.lr"),
        (["run", "--experiment", "nope"], "no experiment named 'nope'"),
        (["run", "--tracking-uri", "ftp://x"], "tracking_uri"),
        (["run", "--device", "cuda"], "CUDA is not available"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_any_work(tmp_path, data_dir, args, fragment):
    proc = run_cli(*args, cwd=tmp_path, data=data_dir)
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no store, no report


def test_list_from_its_cache_and_help_start_without_torch_or_mlflow(tmp_path):
    """What makes them quick (the times are printed, never asserted): `--help`, `run --help` and a
    second `list` (from its cache) import neither torch nor MLflow."""
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPROFILEIMPORTTIME": "1"}
    assert run_process("list", cwd=tmp_path, env=env).returncode == 0  # fills the cache
    for args in (["list"], ["--help"], ["run", "--help"]):
        start = time.perf_counter()
        proc = run_process(*args, cwd=tmp_path, env=env)
        print(args, f"{time.perf_counter() - start:.2f}s")
        assert proc.returncode == 0 and proc.stdout.strip()
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "torch" not in imported and "mlflow" not in imported, args


@pytest.mark.slow  # slow group: about 40 s, a real run in two processes
def test_jobs_per_device_trains_each_pair_once(tmp_path, data_dir):

    fresh_store(tmp_path)
    proc = run_process(
        "run",
        "--variants",
        "baseline,dropout",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--set",
        "train.batch_size=64",
        "--jobs-per-device",
        "2",
        cwd=tmp_path,
        data=data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 processes, 2 per device" in proc.stdout and "4 of 4 runs finished" in proc.stdout
    assert proc.stdout.count("TRAIN EPOCH[001/001]") == 4  # each pair trained by exactly one process
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'seed'")
    assert len(runs) == 4 and {r.data.params["train.threads"] for r in runs} == {"1"}


@pytest.mark.slow
def test_report_covers_every_invocation_and_parents_carry_the_comparison(tmp_path, data_dir):
    """Variants run by separate invocations are one Holm family; a variant trained under other
    shared settings is listed as not comparable, not dropped."""
    import re

    from mlflow import MlflowClient

    fresh_store(tmp_path)
    common = ["--seeds", "1,2", "--set", "train.batch_size=64"]
    assert (
        run_cli(
            "run", "--variants", "baseline,dropout", "--epochs", "1", *common, cwd=tmp_path, data=data_dir
        ).returncode
        == 0
    )
    assert (
        run_cli("run", "--variants", "batchnorm", "--epochs", "1", *common, cwd=tmp_path, data=data_dir).returncode == 0
    )
    report = tmp_path / "reports" / "default" / "report.md"
    text = report.read_text()
    assert "The family is the 2 comparable variant(s)" in text
    rows = {
        m.group(1): m
        for m in re.finditer(
            r"^\| (\w+) \| (\d) \| ([+-][\d.]+) \| (\[[^]]+\]) \| (\[[^]]+\]|–) \|.*\*\*(\w+)\*\* \|$", text, re.M
        )
    }
    assert set(rows) == {"dropout", "batchnorm"}
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("default")
    for parent in client.search_runs([exp.experiment_id], filter_string="tags.`harness.role` = 'variant'"):
        variant = parent.data.tags["harness.variant"]
        if variant == "baseline":
            assert "paired_delta_test_acc" not in parent.data.metrics
            continue
        m = parent.data.metrics
        assert f"{m['paired_delta_test_acc']:+.2f}" == rows[variant].group(3) and m["paired_n"] == 2
        assert f"[{m['paired_delta_ci_low']:.2f}, {m['paired_delta_ci_high']:.2f}]" == rows[variant].group(4)
        assert parent.data.tags["harness.verdict"] == rows[variant].group(6)
    before = report.read_bytes()
    assert run_cli("report", "--experiment", "default", cwd=tmp_path).returncode == 0
    assert report.read_bytes() == before
    # 2 pairs: an sd with 1 degree of freedom plans nothing; an assumed --sd does
    plan = run_cli("plan", "--experiment", "default", "--effect", "1.0", cwd=tmp_path)
    assert plan.returncode == 2 and plan.stderr.strip().endswith(
        "no comparison with 3 or more paired seeds to estimate the spread from; give --sd"
    )
    vary = run_cli("plan", "--experiment", "default", "--vary", "init", cwd=tmp_path)
    assert vary.returncode == 2 and "--vary: needs a variance design's runs in the store" in vary.stderr, vary.stderr
    plan = run_cli("plan", "--experiment", "default", "--effect", "1.0", "--sd", "1.0", cwd=tmp_path)
    assert (
        plan.returncode == 0
        and "2 comparison(s) with `baseline`; Holm's strictest level α/m = 0.05/2 = 0.025" in plan.stdout
    )
    for variant in ("dropout", "batchnorm"):
        cells = [
            c.strip()
            for c in next(x for x in plan.stdout.splitlines() if x.startswith(f"| {variant} |")).strip("|").split("|")
        ]
        assert cells[1] == "2" and cells[3] == "– (not estimable below 3 pairs)"
    given = [
        c.strip()
        for c in next(x for x in plan.stdout.splitlines() if x.startswith("| given --sd |")).strip("|").split("|")
    ]
    # the counts themselves are checked against the power functions in test_stats
    assert int(given[3]) >= 2 and int(given[4]) >= 3
    # the baseline again with 2 epochs: the 1-epoch variants are not comparable with it
    assert (
        run_cli("run", "--variants", "baseline", "--epochs", "2", *common, cwd=tmp_path, data=data_dir).returncode == 0
    )
    text = report.read_text()
    assert "2 epoch(s)" in text and "| dropout | 2/2 |" in text
    assert "- `dropout`: **not comparable**: train.epochs is 1 here but 2 for the baseline." in text
    assert "Only the baseline" not in text and "| batchnorm | – | – |" in text


def test_plan_and_report_create_no_store(tmp_path):
    plan = run_cli(
        "plan", "--experiment", "default", "--sd", "0.6", "--effect", "1", "--comparisons", "3", cwd=tmp_path
    )
    # 80% power at 0.05/3 for d = 1 / 0.6
    assert plan.returncode == 0 and "| given --sd | – | 0.600 | 7 |" in plan.stdout
    for args in (("plan", "--experiment", "default"), ("report", "--experiment", "default")):
        proc = run_cli(*args, cwd=tmp_path)
        assert (
            proc.returncode == 2
            and proc.stderr
            == "error: tracking_uri: no MLflow store at 'mlflow.db'; run `python -m harness run` first or pass --tracking-uri\n"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_artifacts_follow_a_moved_project_folder(tmp_path, data_dir):
    """After the folder moves, old artifacts are found and new ones go beside the store."""
    import shutil

    old, new = tmp_path / "old", tmp_path / "new"
    fresh_store(old)
    common = ["--seeds", "1,2", "--epochs", "1", "--set", "train.batch_size=64"]
    assert run_cli("run", "--variants", "baseline", *common, cwd=old, data=data_dir).returncode == 0
    shutil.move(old, new)
    assert run_cli("report", "--experiment", "default", cwd=new).returncode == 0
    text = (new / "reports" / "default" / "report.md").read_text()
    assert "| airplane |" in text and "summed over fewer seeds" not in text
    assert run_cli("run", "--variants", "baseline,dropout", *common, cwd=new, data=data_dir).returncode == 0
    assert not old.exists()  # nothing recreated at the old place
    assert len(list((new / "mlartifacts" / "default").glob("*/artifacts/predictions.npz"))) == 4


@pytest.mark.slow
def test_report_reads_the_store_and_folder_an_experiment_file_names(tmp_path, data_dir):
    """`report --experiment alt.toml` uses the file's tracking_uri and reports_dir."""
    (tmp_path / "alt.toml").write_text(
        'name = "alt"\ntracking_uri = "sqlite:///alt.db"\nreports_dir = "out"\nvariants = ["baseline"]\n'
        "seeds = [1]\n[train]\nepochs = 1\nbatch_size = 64\n"
    )
    assert run_cli("run", "--experiment", "alt.toml", cwd=tmp_path, data=data_dir).returncode == 0
    before = (tmp_path / "out" / "alt" / "report.md").read_bytes()
    (tmp_path / "out" / "alt" / "report.md").unlink()
    proc = run_cli("report", "--experiment", "alt.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "alt" / "report.md").read_bytes() == before
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    "case,made,args,fragment",
    [
        (
            "sqlite query",
            set(),
            ["run", "--tracking-uri", "sqlite:///x.db?timeout=5"],
            "tracking_uri: 'sqlite:///x.db?timeout=5': query options are not supported",
        ),
        ("checkpoint a folder", {"checkpoints"}, ["run"], "is not a file where a run's checkpoint belongs"),
        (
            "train = 5 with --epochs",
            {"exp.toml"},
            ["run", "--experiment", "exp.toml", "--epochs", "2"],
            "train: expected a table of settings ([train]), got int 5",
        ),
        (
            "round without seeds on demand",
            set(),
            ["run", "--env", "HARNESS_FAULT=round:1"],
            "HARNESS_FAULT: the point 'round' is passed only with seeds on demand",
        ),
        (
            "params from a FIFO",
            {"fifo.toml"},
            ["run", "--params-from", "fifo.toml"],
            "--params-from: 'fifo.toml' is not a regular file",
        ),
        (
            "ray without Ray",
            set(),
            ["run", "--executor", "ray", "--ray-address", "auto", "--env", "RAY_MISSING=1"],
            "--executor ray: Ray is not installed",
        ),
        (
            "bench with no training images",
            set(),
            ["bench", "--train-images", "0"],
            "--train-images/--val-images: 0 + 100 is not allowed",
        ),
        ("plan beyond its search", set(), ["plan", "--experiment", "default", "--sd", "1", "--effect", "1e-9"], None),
    ],
)
def test_more_tracebacks_become_one_line(tmp_path, data_dir, case, made, args, fragment):
    env = {}
    if "--env" in args:
        i = args.index("--env")
        key, _, value = args[i + 1].partition("=")
        env[key] = value
        args = args[:i] + args[i + 2 :]
    if "checkpoints" in made:
        (tmp_path / "checkpoints" / "default" / "0123456789abcdef-2021.pt").mkdir(parents=True)
    if "exp.toml" in made:
        (tmp_path / "exp.toml").write_text("train = 5\n")
    if "fifo.toml" in made:
        os.mkfifo(tmp_path / "fifo.toml")
    if env.pop("RAY_MISSING", None):  # a Python that cannot import ray, as where the extra is not installed
        (tmp_path / "shadow").mkdir()
        (tmp_path / "shadow" / "ray.py").write_text("raise ImportError('no ray here')\n")
        env["PYTHONPATH"] = f"{tmp_path / 'shadow'}:{ROOT}"
        made = made | {"shadow"}
    runner = run_process if env else run_cli  # a changed environment (a fault point, no Ray) needs its own process
    proc = runner(*args, cwd=tmp_path, data=data_dir, env=env)
    if fragment is None:  # plan answers; it never prints its internal cap as if it were the answer
        assert proc.returncode == 0, proc.stderr
        assert "more than 100000" in proc.stdout and "| 100000 " not in proc.stdout, proc.stdout
        return
    check_refusal(tmp_path, proc, fragment, {"data"} | made)
