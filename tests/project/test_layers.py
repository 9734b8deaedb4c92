"""The layering of the code stays true: no import of a higher layer, no import circle anywhere
(tests/layering.py reads every import statement with ast), and the checker itself catches both
when they are made on purpose in a copy of the tree. Also: ruff formats and lints the tree clean,
every tag name is spelt once, and the public surface loads lazily."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import layering

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_imports_a_higher_layer_and_none_imports_itself_round_a_circle():
    g = layering.graph(ROOT)
    assert len(g) > 40 and any(g.values())  # it read the real tree
    assert layering.upward(g) == []
    assert layering.circles(g) == []
    assert layering.dynamic(ROOT) == []  # an import by string would hide an arrow from the graph


def test_the_public_surface_imports_nothing_of_the_project_when_it_loads():
    tree = ast.parse((ROOT / "harness" / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert {a.name for n in top for a in n.names} <= {"annotations", "importlib"}


def test_every_package_is_a_known_layer_with_a_docstring_that_names_what_it_may_import():
    packages = sorted(p.name for p in (ROOT / "harness").iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(set(layering.LAYERS) - {"surface"})
    for name in packages:
        doc = (ROOT / "harness" / name / "__init__.py").read_text()
        assert doc.startswith('"""') and ("May import" in doc or "Imports nothing" in doc), name
        if name != "variants":  # importing the components' package registers them all
            assert "import " not in doc.split('"""')[2], (
                f"harness/{name}/__init__.py imports something: a layer's __init__ is its docstring"
            )


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_checker_finds_a_circle_made_on_purpose_in_a_copy(tmp_path):
    root = _copy(tmp_path)
    stats = root / "harness" / "analysis" / "stats.py"  # sequential imports stats; now stats imports sequential too
    stats.write_text(
        stats.read_text() + "\n\ndef _loop():\n    from harness.analysis import sequential  # noqa: F401\n"
    )
    g = layering.graph(root)
    assert layering.upward(g) == []  # one layer: not upward, but a circle
    assert ["harness.analysis.sequential", "harness.analysis.stats"] in layering.circles(g)


def test_the_checker_finds_an_upward_import_made_on_purpose_in_a_copy(tmp_path):
    root = _copy(tmp_path)
    readback = root / "harness" / "tracking" / "readback.py"
    readback.write_text(readback.read_text() + "\nfrom harness.report.markdown import write  # noqa: E402,F401\n")
    g = layering.graph(root)
    assert "harness.tracking.readback (tracking) -> harness.report.markdown (report)" in layering.upward(g)
    assert any("harness.tracking.readback" in c and "harness.report.markdown" in c for c in layering.circles(g))


def test_the_checker_resolves_relative_imports_and_sees_imports_by_string(tmp_path):
    root = _copy(tmp_path)
    readback = root / "harness" / "tracking" / "readback.py"
    readback.write_text(
        readback.read_text() + "\nfrom ..report import markdown  # noqa: E402,F401\n"
        "__import__('importlib').import_module('harness.report.plots')\n"
    )
    assert "harness.tracking.readback (tracking) -> harness.report.markdown (report)" in layering.upward(
        layering.graph(root)
    )
    assert layering.dynamic(root) == [f"harness/tracking/readback.py:{len(readback.read_text().splitlines())}"] * 2


def test_a_component_file_may_register_a_dataset(tmp_path):
    root = _copy(tmp_path)
    (root / "harness" / "variants" / "stripes.py").write_text(
        "from harness import Dataset, register_dataset  # noqa: F401\n"
        "from harness.data.loading import make_split  # noqa: F401\n"
    )
    assert layering.upward(layering.graph(root)) == []


def test_an_import_of_the_public_surface_from_inside_is_upward(tmp_path):
    root = _copy(tmp_path)
    engine = root / "harness" / "training" / "engine.py"
    engine.write_text(engine.read_text() + "\nimport harness  # noqa: E402,F401\n")
    assert "harness.training.engine (training) -> harness (surface)" in layering.upward(layering.graph(root))


def test_a_component_file_may_import_the_public_surface_but_a_lower_layer_may_not_reach_up_through_it(tmp_path):
    root = _copy(tmp_path)
    (root / "harness" / "variants" / "wide.py").write_text("from harness import Change, register  # noqa: F401\n")
    engine = root / "harness" / "training" / "engine.py"
    engine.write_text(engine.read_text() + "\nfrom harness import build_report  # noqa: E402,F401\n")
    bad = layering.upward(layering.graph(root))
    assert bad == ["harness.training.engine (training) -> harness.report.markdown (report)"]


def test_the_tree_is_formatted_and_linted_clean_by_ruff():
    """`ruff format --check` and `ruff check` (pyproject.toml's [tool.ruff]: C901 at 15 in place of line caps), as .ci/run runs them."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).is_file():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    for args in (["format", "--check", "."], ["check", "."]):
        out = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_the_public_surface_resolves_every_name_and_loads_nothing_heavy_until_asked():
    code = (
        "import sys, harness; heavy = [m for m in ('torch', 'mlflow', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy; [getattr(harness, n) for n in harness.__all__]; "
        "assert harness.register.__module__ == 'harness.variants.registry'; print(len(harness.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import harness

    with pytest.raises(AttributeError, match="public names"):
        harness.not_a_name  # noqa: B018


def test_every_name_the_harness_writes_into_mlflow_is_spelt_once_in_tracking_names():
    """A tag (or Optuna attribute) named `harness.<x>` appears as a string only in harness/tracking/names.py;
    elsewhere, strings of that form are module paths and the entry-point group (also spelt in `list`)."""
    from harness.cli import listing
    from harness.variants import plugins

    modules = set(layering.modules(ROOT))
    found = []
    for module, path in layering.modules(ROOT).items():
        if module == "harness.tracking.names":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"harness\.[a-z_.]+", node.value)
            ):
                text = node.value.rstrip(".")
                if text not in modules and not any(m.startswith(text + ".") for m in modules):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == [
        f"harness/cli/listing.py:{_line(listing.__file__, 'ENTRY_POINT_GROUP =')} 'harness.components'",
        f"harness/variants/plugins.py:{_line(plugins.__file__, 'ENTRY_POINT_GROUP =')} 'harness.components'",
    ]
    assert listing.ENTRY_POINT_GROUP == plugins.ENTRY_POINT_GROUP


def _line(path: str, start: str) -> int:
    return next(n for n, line in enumerate(Path(path).read_text().splitlines(), 1) if line.startswith(start))
