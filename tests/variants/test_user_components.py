"""The user's own components: from their files, modules and installed entry points, with run keys
that follow their source, refused in one line when they fail, and run end to end (with a folder:
dataset) through `run`, `report` and `export`, their models loading again elsewhere. Helpers shared
with tests/api/test_user_study.py live here."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from harness.base.errors import UsageError
from harness.data import datasets
from harness.settings import config, experiment_file
from harness.variants import registry
from tests.helpers import ROOT, component_file, fresh_store, image_folder, run_cli
from tests.helpers import run_process as cli


def _key(cfg, variant: str) -> str:
    return config.resolve(cfg, variant, cfg.seeds[0]).key("cifar10:abc", "split")


def test_a_user_components_edit_changes_its_run_keys_and_an_unchanged_file_keeps_them(
    tmp_path, clean_registry, monkeypatch
):
    path = component_file(tmp_path, "keys_components")
    sets = ["train.epochs=1"]
    cfg = experiment_file.load_experiment(None, sets, components=[str(path)], variants=("baseline", "wide"))
    first = {v: _key(cfg, v) for v in cfg.variants}
    assert registry.component("wide").origin == f"file {path}" and registry.component("wide").path == str(
        path.resolve()
    )
    assert config.resolve(cfg, "wide", 2021).flat()["code.wide"] == registry.component("wide").digest
    # The shipped baseline's key is what it was without any user component.
    assert first["baseline"] == _key(experiment_file.load_experiment(None, sets, variants=("baseline",)), "baseline")

    again = experiment_file.load_experiment(None, sets, components=[str(path)], variants=("baseline", "wide"))
    assert {v: _key(again, v) for v in again.variants} == first  # loaded again, unchanged: the same keys

    helper = tmp_path / "keys_helper_widths.py"  # the user's own module that the component file imports
    helper.write_text("HIDDEN = 240\n")
    path.write_text("import keys_helper_widths  # noqa: F401\n" + path.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    with_helper = experiment_file.load_experiment(None, sets, components=[str(path)], variants=("baseline", "wide"))
    helper_key = _key(with_helper, "wide")
    helper.write_text("HIDDEN = 480\n")  # only the helper changes
    assert (
        _key(experiment_file.load_experiment(None, sets, components=[str(path)], variants=("baseline", "wide")), "wide")
        != helper_key
    )
    path.write_text(path.read_text() + "\n# tuned the comment only: still a different source\n")
    edited = experiment_file.load_experiment(None, sets, components=[str(path)], variants=("baseline", "wide"))
    keys = {v: _key(edited, v) for v in edited.variants}
    assert keys["wide"] != first["wide"] and keys["baseline"] == first["baseline"]


def test_components_in_an_experiment_file_are_read_relative_to_it_and_modules_by_name(
    tmp_path, clean_registry, monkeypatch
):
    component_file(tmp_path / "exp", "file_components", name="wide_file")
    component_file(tmp_path / "pkg" / "mine", "ablations", name="wide_module")
    (tmp_path / "pkg" / "mine" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    toml = tmp_path / "exp" / "study.toml"
    toml.write_text(
        'components = ["file_components.py", "mine.ablations"]\nvariants = ["baseline", "wide_file", "wide_module"]\n'
    )
    monkeypatch.chdir(tmp_path)  # not the file's folder: the path is read relative to the experiment file
    cfg = experiment_file.load_experiment(str(toml))
    assert cfg.components == (str((tmp_path / "exp" / "file_components.py").resolve()), "mine.ablations")
    assert registry.component("wide_module").origin == "module mine.ablations"
    assert registry.component("wide_module").digest and not registry.component("dropout").digest


@pytest.mark.parametrize(
    "source, message",
    [
        (
            "from harness import register\nx = 1\nraise ValueError('boom')\n",
            r"--components: .*bad\.py, line 3: ValueError: boom$",
        ),
        ("def broken(:\n    pass\n", r"--components: .*bad\.py, line 1: SyntaxError: "),
        (
            "import no_such_module_anywhere\n",
            r"--components: .*bad\.py, line 1: ModuleNotFoundError: No module named 'no_such_module_anywhere'$",
        ),
        (
            "from harness import Change, register\n@register('dropout', hypothesis='mine')\ndef d(p: float = 0.1):\n    return Change()\n",
            r"component 'dropout' in .*bad\.py collides with the shipped component 'dropout' in .*variants/dropout\.py; rename one of them",
        ),
        (
            "from harness import Change, register\n@register('mine', hypothesis='mine')\ndef d(p):\n    return Change()\n",
            r"component 'mine' .*every parameter needs a default, p has none",
        ),
        (
            "import sys\nsys.exit(0)\n",
            r"--components: .*bad\.py, line 2: SystemExit: sys.exit\(0\) was called \(a component file must not exit\)$",
        ),
        (
            "x = 1\n",
            r"--components: .*bad\.py registers no component or dataset; decorate a function with @harness.register",
        ),
    ],
)
def test_a_component_file_that_fails_is_one_line_naming_the_file_and_line(tmp_path, clean_registry, source, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(UsageError, match=message) as caught:
        experiment_file.load_experiment(None, components=[str(path)])
    assert "\n" not in str(caught.value)
    assert not any(c.path == str(path.resolve()) for c in registry.all_components())  # nothing half-registered stays
    assert "bad" not in sys.modules


@pytest.mark.parametrize(
    "entries, message",
    [
        (["nowhere.py"], r"--components: 'nowhere.py' is not a file"),
        (
            ["no_such_pkg.ablations"],
            r"--components: 'no_such_pkg.ablations' is neither a file nor an importable module",
        ),
        (["json"], None),  # a standard module registers nothing: allowed
        (["my-components.py"], r"the file's name must be a Python identifier"),
    ],
)
def test_bad_component_entries_are_refused_in_one_line(tmp_path, clean_registry, monkeypatch, entries, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-components.py").write_text("")
    if message is None:
        experiment_file.load_experiment(None, components=entries)
        return
    with pytest.raises(UsageError, match=message):
        experiment_file.load_experiment(None, components=entries)


def test_a_file_that_registers_a_dataset_can_be_edited_and_loaded_again(tmp_path, clean_registry):
    path = component_file(
        tmp_path,
        "with_data",
        extra=textwrap.dedent("""
        import numpy as np
        from harness import Dataset, register_dataset

        register_dataset(Dataset("mine_stripes", ("a", "b"), (1, 16, 16), "mine_stripes.npz", lambda d: {}, "mine"))
        """),
    )
    try:
        experiment_file.load_experiment(None, components=[str(path)])
        path.write_text(path.read_text() + "# edited\n")
        # its dataset is registered again, not refused as taken
        experiment_file.load_experiment(None, components=[str(path)])
        assert datasets.get("mine_stripes").source == "mine"
    finally:
        datasets.forget_from(str(path.resolve()))


def test_components_that_are_not_a_list_of_names_are_refused(tmp_path):
    toml = tmp_path / "e.toml"
    toml.write_text('components = "mine.py"\n')
    with pytest.raises(UsageError, match=r"components: expected a list of \.py files or module names, got 'mine.py'"):
        experiment_file.load_experiment(str(toml))


def test_an_installed_packages_entry_point_registers_its_components_by_itself(tmp_path):
    site = tmp_path / "site"
    component_file(site / "deeper_plugin", "__init__", name="deeper")
    info = site / "deeper_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deeper-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[harness.components]\ndeeper = deeper_plugin\n")
    env = {"PYTHONPATH": f"{site}:{ROOT}", "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    proc = cli("list", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("deeper "))
    assert row.rstrip().endswith("entry point deeper (deeper-plugin 0.3)") and "120,206" in row
    assert "shipped (dropout.py)" in proc.stdout

    (site / "deeper_plugin" / "__init__.py").write_text("raise RuntimeError('the plugin is broken')\n")
    # a changed plugin is a new cache key: it is imported, and fails in one line
    proc = cli("list", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: entry point deeper (deeper-plugin 0.3) = deeper_plugin: "
        f"{site / 'deeper_plugin' / '__init__.py'}, line 1: RuntimeError: the plugin is broken; fix or uninstall that package"
    )


def test_a_folder_dataset_and_a_user_component_run_through_run_report_and_export(tmp_path):
    """docs/extending.md's "Adding a component" (docs/examples/my_components.py, as written): a file
    outside the package, used by `run --components`."""
    work = tmp_path / "w"
    fresh_store(work)
    (work / "my_components.py").write_text((ROOT / "docs" / "examples" / "my_components.py").read_text())
    image_folder(work / "shapes", per_class=15, mode="RGB", sizes=((32, 32),))
    env = {"HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    run = (
        "run",
        "--components",
        "my_components.py",
        "--variants",
        "baseline,wide",
        "--dataset",
        "folder:shapes",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--set",
        "train.batch_size=8",
    )
    proc = run_cli(*run, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "data: the image folder shapes (30 images, 2 classes, 32×32; test: 20% of each class held out as the test set (seed 0))"
        in proc.stdout
    )
    report = run_cli("report", "--experiment", "default", cwd=work, env=env)
    assert report.returncode == 0, report.stderr
    # the content, not the path
    assert "- data (dataset:content hash): folder:" in (work / "reports" / "default" / "report.md").read_text()
    proc = run_cli("export", "--experiment", "default", "--format", "json", "--table", "runs", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    runs = pd.DataFrame(json.loads(proc.stdout))
    assert sorted(zip(runs.variant, runs.seed)) == [
        ("baseline", 2021),
        ("baseline", 2022),
        ("wide", 2021),
        ("wide", 2022),
    ]
    assert set(runs.status) == {"FINISHED"}

    # The logged model of a user architecture loads in a fresh process that cannot import the user's file by itself.
    wide_run = runs[runs.variant == "wide"].run_id.iloc[0]
    code = (
        f"import mlflow, torch; mlflow.set_tracking_uri('sqlite:///{work / 'mlflow.db'}'); "
        f"m = mlflow.pytorch.load_model('runs:/{wide_run}/model'); print(type(m).__name__, m(torch.zeros(2, 3, 32, 32)).shape[1])"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["WideNet", "2"]
