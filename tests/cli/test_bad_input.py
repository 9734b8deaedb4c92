"""Bad input, through the CLI's own entry point: exit code 2, one line naming the field, the value
and what is allowed, no traceback, and nothing created (no store, no checkpoint, no report) before
it. The many cases run in this process (`run_cli`: harness.cli.commands.main with captured
output); `test_a_refusal_through_a_real_process_is_one_line_and_exit_2` holds the same contract for
a real `python -m harness` process, one case of each kind."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import check_refusal, make_arrays, run_cli, run_process


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
    "unsupported tracking URI": (
        ["--tracking-uri", "ftp://host/store"],
        "tracking_uri: 'ftp://host/store' is not supported",
    ),
    "CUDA where there is none": (["--device", "cuda"], "CUDA is not available"),
    "unknown precision": (
        ["--set", "train.precision=fp16"],
        "train.precision: 'fp16' is not allowed; expected one of fp32",
    ),
    "CUDA graphs on a CPU": (
        ["--set", "train.compile=reduce-overhead"],
        "train.compile: 'reduce-overhead' captures CUDA graphs and needs a CUDA device",
    ),
    "unknown determinism": (["--set", "train.determinism=maybe"], "train.determinism: 'maybe' is not allowed"),
    # stores, names, seeds, threads, analysis and split settings
    "in-memory store": (
        ["--tracking-uri", "sqlite:///:memory:"],
        "tracking_uri: 'sqlite:///:memory:' is an in-memory store, lost when the command ends",
    ),
    "store without a path": (["--tracking-uri", "sqlite:///"], "tracking_uri: 'sqlite:///' is an in-memory store"),
    "file: store": (["--tracking-uri", "file:./mlruns"], "tracking_uri: 'file:./mlruns' is not supported"),
    "postgresql without its driver": (
        ["--tracking-uri", "postgresql+pg8000://u:p@localhost/db"],
        "tracking_uri: 'localhost/db' needs the pg8000 driver; install it with `pip install pg8000`",
    ),
    "mysql without its driver": (
        ["--tracking-uri", "mysql://u:p@localhost/db"],
        "needs the mysqldb driver; install it with `pip install mysqlclient`",
    ),
    "unreachable postgresql": (
        ["--tracking-uri", "postgresql://u:p@127.0.0.1:9/db"],
        "tracking_uri: cannot reach the database at '127.0.0.1:9/db'",
    ),
    "unreachable tracking server": (
        ["--tracking-uri", "http://127.0.0.1:9"],
        "tracking_uri: cannot reach the MLflow server at 'http://127.0.0.1:9'",
    ),
    "name of dots": (
        ["--set", "name=.."],
        "name: '..' is not allowed; expected 1 to 100 letters, digits, '-', '_' or '.', not only dots",
    ),
    "name with a separator": (["--set", "name='a/b'"], "name: 'a/b' is not allowed"),
    "name too long": (["--set", f"name={'x' * 300}"], "is not allowed; expected 1 to 100 letters"),
    "seed count of zero": (["--seeds", "0"], "--seeds: a seed count must be from 1 to 1000, got 0"),
    "seed count too large": (
        ["--seeds", "100000"],
        "--seeds: a seed count must be from 1 to 1000, got 100000; name seeds as a list",
    ),
    "empty seed item": (["--seeds", "1,,2"], "--seeds: '1,,2' has an empty item"),
    "more threads than cores": (["--set", "train.threads=4096"], "train.threads: 4096 is more than the"),
    "unknown deciding test": (["--set", "analysis.test=wilcoxon"], "analysis.test: 'wilcoxon' is not allowed"),
    "zero margin": (["--set", "analysis.margin=0"], "analysis.margin: 0.0 is not allowed"),
    "unknown analysis setting": (
        ["--set", "analysis.power=0.9"],
        "analysis.power: unknown setting; allowed: margin, test, alpha",
    ),
    "per-seed split of a prefix split": (
        ["--set", "data.split_seed=per_seed", "--set", "data.split=prefix"],
        'data.split_seed: "per_seed" needs data.split = "stratified"',
    ),
    "unknown split seed word": (["--set", "data.split_seed=each"], "data.split_seed: 'each' is not allowed"),
    # seeds on demand
    "a budget of one seed": (
        ["--variants", "baseline,dropout", "--seeds", "auto", "--max-seeds", "1"],
        "max_seeds: 1 is not allowed; expected an integer from min_seeds (3) to 1000",
    ),
    "negative margin": (
        ["--variants", "baseline,dropout", "--seeds", "auto", "--margin", "-1"],
        "analysis.margin: -1.0 is not allowed",
    ),
    "auto in a list of seeds": (["--seeds", "auto,2021"], "--seeds: 'auto,2021' is not allowed; auto stands alone"),
    "a budget for fixed seeds": (["--seeds", "2021,2022", "--max-seeds", "5"], "--max-seeds: only with --seeds auto"),
    "auto without the baseline": (
        ["--variants", "dropout,batchnorm", "--seeds", "auto"],
        "the variants must include the baseline 'baseline'",
    ),
    "auto with a factorial design": (
        ["--design", "factorial", "--factors", "dropout,batchnorm", "--seeds", "auto"],
        'seeds: "auto" works with a list of variants, not a factorial design',
    ),
    "auto in several processes": (
        ["--variants", "baseline,dropout", "--seeds", "auto", "--jobs-per-device", "2"],
        "--seeds auto: its rounds run in one process",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejected_before_any_work(tmp_path, data_dir, case):
    args, fragment = CASES[case]
    check_refusal(tmp_path, run_cli("run", *args, cwd=tmp_path, data=data_dir), fragment, {"data"})


FILE_CASES = {
    "empty experiment file": ("   \n", "is empty"),
    "experiment named by dots": ('name = ".."\n', "name: '..' is not allowed"),
    "bad analysis table": ("analysis = 3\n", "analysis: expected a table, got int 3"),
    "malformed experiment file": ("[train\nepochs = ", "is not valid TOML"),
    "unknown key in experiment file": ("colour = 'red'\n", "colour: unknown setting"),
    "wrong type in experiment file": ("[train]\nepochs = 'ten'\n", "train.epochs: expected int, got str 'ten'"),
    "a budget below the first round": (
        'seeds = "auto"\nmin_seeds = 5\nmax_seeds = 4\nvariants = ["baseline", "dropout"]\n',
        "max_seeds: 4 is not allowed; expected an integer from min_seeds (5) to 1000",
    ),
    "a first round of one seed": (
        'seeds = "auto"\nmin_seeds = 1\nvariants = ["baseline", "dropout"]\n',
        "min_seeds: 1 is not allowed",
    ),
    "a budget without auto": ("seeds = 3\nmax_seeds = 10\n", 'max_seeds: only with seeds = "auto"'),
    "auto inside a list": ('seeds = ["auto", 2021]\n', 'seeds: "auto" stands alone'),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_experiment_files(tmp_path, data_dir, case):
    text, fragment = FILE_CASES[case]
    (tmp_path / "exp.toml").write_text(text)
    check_refusal(
        tmp_path,
        run_cli("run", "--experiment", "exp.toml", cwd=tmp_path, data=data_dir),
        fragment,
        {"data", "exp.toml"},
    )


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("shape", "x_train has shape (500, 16, 32, 3); expected (N, 32, 32, 3)"),
        ("dtype", "x_train has dtype float32; expected uint8"),
        ("labels", "y_train holds label 12; expected labels 0..9"),
        ("missing_key", "lacks key 'y_test'"),
        ("classes", "y_train holds 1 classes; expected all 10"),
        ("truncated", "is not a readable .npz file"),
    ],
)
def test_corrupt_dataset(tmp_path, kind, fragment):
    data = _corrupt(kind, tmp_path / "data")
    check_refusal(tmp_path, run_cli("run", cwd=tmp_path, data=data), fragment, {"data"})


def _store(kind: str, path):
    import sqlite3

    from tests.helpers import fresh_store

    if kind == "truncated":
        fresh_store(path.parent)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif kind == "foreign database":
        with sqlite3.connect(path) as db:
            db.execute("create table invoices (id integer primary key, total real)")
    elif kind == "directory":
        path.mkdir()
    elif kind == "read-only":
        fresh_store(path.parent)
        path.chmod(0o444)
    elif kind == "newer schema":
        fresh_store(path.parent)
        with sqlite3.connect(path) as db:
            db.execute("update alembic_version set version_num = 'ffff00000001'")


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("truncated", "tracking_uri: 'mlflow.db' is not a readable SQLite database"),
        ("random bytes", "tracking_uri: 'mlflow.db' is not a readable SQLite database"),
        (
            "foreign database",
            "tracking_uri: 'mlflow.db' is an SQLite database without MLflow's tables (it holds invoices...)",
        ),
        ("directory", "tracking_uri: 'mlflow.db' is not a file"),
        ("read-only", "tracking_uri: 'mlflow.db' is read-only; the harness writes to its store"),
        ("newer schema", "tracking_uri: 'mlflow.db' has database schema ffff00000001, which this MLflow"),
    ],
)
def test_a_store_that_is_not_an_mlflow_store_is_named(tmp_path, data_dir, kind, fragment):
    _store(kind, tmp_path / "mlflow.db")
    before = (tmp_path / "mlflow.db").read_bytes() if (tmp_path / "mlflow.db").is_file() else None
    check_refusal(tmp_path, run_cli("run", cwd=tmp_path, data=data_dir), fragment, {"data", "mlflow.db"})
    if before is not None:
        assert (tmp_path / "mlflow.db").read_bytes() == before  # not converted, not touched


@pytest.mark.parametrize(
    "args,fragment,made",
    [
        (
            ["report", "--experiment", "default", "--reports-dir", "a-file"],
            "--reports-dir: cannot create or write",
            {"a-file"},
        ),
        (["bench", "--out", "a-folder"], "--out: 'a-folder' is a directory", {"a-folder"}),
        (["plan", "--experiment", "default", "--effect", "-1"], "--effect: -1.0 is not allowed", set()),
        (["plan", "--experiment", "default", "--sd", "1", "--power", "1.5"], "--power: 1.5 is not allowed", set()),
        (
            ["plan", "--experiment", "default", "--vary", "init,init"],
            "--vary: init listed twice; name each source once",
            set(),
        ),
        (["plan", "--experiment", "default", "--sd", "1", "--vary", "init"], "--vary: not with --sd", set()),
        (["tune", "--variant", "dropout", "--study", "a'b"], '--study: "a\'b" is not allowed', set()),
        (
            ["run", "--params-from", "params.toml"],
            "--params-from: 'params.toml': params.dropout must be a table of parameters, got int 5",
            {"params.toml"},
        ),
        (
            ["run", "--params-from", "sgd.toml"],
            "--params-from: 'sgd.toml' sets parameters for sgd, which none of the variants run (baseline) uses",
            {"sgd.toml"},
        ),
        (["run", "--experiment", "....toml"], "name: '...' is not allowed", {"....toml"}),
    ],
)
def test_more_commands_refuse_bad_input_first(tmp_path, data_dir, args, fragment, made):
    (tmp_path / "a-file").write_text("not a folder") if "a-file" in made else None
    (tmp_path / "a-folder").mkdir() if "a-folder" in made else None
    (tmp_path / "params.toml").write_text("[params]\ndropout = 5\n") if "params.toml" in made else None
    (tmp_path / "sgd.toml").write_text("[params.sgd]\nlr = 0.1\n") if "sgd.toml" in made else None
    (tmp_path / "....toml").write_text("[train]\nepochs = 1\n") if "....toml" in made else None
    check_refusal(tmp_path, run_cli(*args, cwd=tmp_path, data=data_dir), fragment, {"data"} | made)


@pytest.mark.parametrize(
    "kind,fragment",
    [
        ("random bytes", "is not a readable claims database (file is not a database)"),
        ("directory", "checkpoints/default/claims.sqlite' is not a file"),
    ],
)
def test_a_broken_claims_file_is_named(tmp_path, data_dir, kind, fragment):
    path = tmp_path / "checkpoints" / "default" / "claims.sqlite"
    path.parent.mkdir(parents=True)
    path.mkdir() if kind == "directory" else path.write_bytes(b"\x13" * 5000)
    check_refusal(tmp_path, run_cli("run", cwd=tmp_path, data=data_dir), fragment, {"data", "checkpoints"})


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["run", "--seeds", "auto,2021"], "--seeds: 'auto,2021' is not allowed; auto stands alone"),
        (["run", "--set", "train.epochs='ten'"], "train.epochs"),
        (["plan", "--experiment", "default", "--effect", "-1"], "--effect: -1.0 is not allowed"),
    ],
)
def test_a_refusal_through_a_real_process_is_one_line_and_exit_2(tmp_path, data_dir, argv, fragment):
    check_refusal(tmp_path, run_process(*argv, cwd=tmp_path, data=data_dir), fragment, {"data"})


def test_a_malformed_fault_variable_is_named(tmp_path, data_dir):
    proc = run_process("run", cwd=tmp_path, data=data_dir, env={"HARNESS_FAULT": "step"})
    check_refusal(tmp_path, proc, "HARNESS_FAULT: 'step' is not allowed; expected POINT:N[:SIGNAL]", {"data"})


def test_ui_on_a_port_in_use_fails_naming_it(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_process("ui", "--port", str(port), cwd=tmp_path)
    check_refusal(tmp_path, proc, f"--port: cannot listen on 127.0.0.1:{port} (Address already in use)", set())


def test_ui_on_a_public_address_warns(tmp_path):
    import contextlib
    import io
    import socket

    from harness.cli import ui

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        ui.check_address("0.0.0.0", port)
        ui.check_address("127.0.0.1", port)
    assert err.getvalue().count("warning: --host 0.0.0.0: the MLflow UI has no authentication") == 1
    assert err.getvalue().count("\n") == 1


def test_unwritable_output_and_checkpoint_dirs(tmp_path, data_dir):
    (tmp_path / "plain-file").write_text("not a folder")
    for setting, field in (("reports_dir", "reports_dir"), ("checkpoint_dir", "checkpoint_dir")):
        proc = run_process("run", "--set", f"{setting}='plain-file/out'", cwd=tmp_path, data=data_dir)
        check_refusal(tmp_path, proc, f"{field}: cannot create or write", {"data", "plain-file"})
    proc = run_process("run", "--tracking-uri", "sqlite:///plain-file/mlflow.db", cwd=tmp_path, data=data_dir)
    check_refusal(tmp_path, proc, "tracking_uri: cannot write the SQLite store", {"data", "plain-file"})


def test_missing_dataset_names_the_directory(tmp_path):
    proc = run_process("run", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    check_refusal(tmp_path, proc, str(tmp_path / "nowhere"), set())
    assert "--data-dir" in proc.stderr and "HARNESS_DATA_DIR" in proc.stderr


def test_debug_shows_the_traceback(tmp_path, data_dir):
    proc = run_process("--debug", "run", "--set", "train.lr=0", cwd=tmp_path, data=data_dir)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_list_with_a_component_that_cannot_be_built_names_it(tmp_path):
    """A component whose builder has a required argument: one line, exit 2."""
    import shutil

    from tests.helpers import ROOT

    # a copy to edit
    shutil.copytree(ROOT / "harness", tmp_path / "pkg" / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    variants = tmp_path / "pkg" / "harness" / "variants"
    (variants / "needs_arg.py").write_text(
        "from harness.variants.registry import Change, register\n\n\n"
        "@register('needs_arg', 'A builder with a required argument.')\n"
        "def needs_arg(width: int) -> Change:\n    return Change()\n"
    )
    init = variants / "__init__.py"
    init.write_text(init.read_text() + "\nfrom harness.variants import needs_arg  # noqa: E402,F401\n")
    proc = run_process(
        "list", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "pkg"), "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert (
        proc.stderr
        == "error: variants: component 'needs_arg' (harness.variants.needs_arg): every parameter needs a default, width has none\n"
    )
