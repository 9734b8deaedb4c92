"""The code in the README and docs/extending.md runs as written. Each example file has one source,
docs/examples/*.py, and every Python block of the docs that shows it is that file, byte for byte;
the component registers, composes with a shipped one and trains a step; the dataset registers, is
made, checked and split like a shipped one, and a second registration of its name is refused; the
README's API block runs end to end with its sizes shrunk. Each runs in a fresh process, as a user's
file would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


EXAMPLES = ROOT / "docs" / "examples"


def _blocks(page: str = "docs/extending.md") -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)


def test_every_example_the_docs_show_is_its_one_source_file():
    """A block that defines a component or a dataset is docs/examples' file of it, so no page can
    show a version that does not build while the tested file does."""
    sources = {p.name: p.read_text() for p in EXAMPLES.glob("*.py")}
    assert set(sources) == {"my_components.py", "stripes.py"}
    shown = 0
    for page in ("README.md", *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md")))):
        for block in _blocks(page):
            if "@register(" in block or "register_dataset(" in block:
                assert block in sources.values(), f"{page}: a block differs from every file in docs/examples"
                shown += 1
    assert shown == 2  # the component and the dataset in docs/extending.md


def _run(code: str, cwd: Path, timeout: int = 300, **env: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd), **env},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_the_component_example_registers_composes_and_trains_a_step(tmp_path):
    component = (EXAMPLES / "my_components.py").read_text()
    assert "from harness import Change, register" in component and "harness.variants." not in component
    check = (
        component
        + """
import torch
from harness import variants
from harness.training import engine
net = variants.get("weight_decay+wide").change({}).build((3, 32, 32), 10)
x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
loss = torch.nn.functional.cross_entropy(net(x), y)
loss.backward()
print("ok", type(net).__name__, net.head[1].out_features)
"""
    )
    assert _run(check, tmp_path).split() == ["ok", "WideNet", "240"]


def test_the_component_example_is_listed_and_trains_from_the_command_line(tmp_path):
    """As a user would use it: the block saved as a file, `list --components` shows it (it builds for
    3×32×32 before any weight is used) and `run` trains it for an epoch."""
    from tests.helpers import fresh_store, run_cli, write_npz

    (tmp_path / "my_components.py").write_text((EXAMPLES / "my_components.py").read_text())
    listed = run_cli("list", "--components", "my_components.py", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"\nwide +120,206 +.*architecture WideNet", listed.stdout), listed.stdout
    fresh_store(tmp_path)
    data = write_npz(tmp_path / "data")
    flags = ["--components", "my_components.py", "--variants", "baseline,wide", "--seeds", "1", "--epochs", "1"]
    ran = run_cli("run", *flags, "--set", "train.batch_size=64", cwd=tmp_path, data=data)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "2 of 2 runs finished" in ran.stdout


def test_the_dataset_example_registers_and_loads_like_a_shipped_dataset(tmp_path):
    dataset = (EXAMPLES / "stripes.py").read_text()
    assert "from harness import Dataset, register_dataset" in dataset
    check = (
        dataset
        + f"""
from pathlib import Path
import harness
from harness.data import datasets, loading
source = loading.read_source(datasets.get("stripes"), Path({str(tmp_path)!r}))
loaded = loading.load_split(source, "stratified", 0.8, 0, __import__("torch").device("cpu"))
print(source.identity.split(":")[0], len(loaded.tensors.y_train), len(loaded.tensors.y_val), len(loaded.tensors.y_test))
try:
    register_dataset(datasets.get("stripes"))
except harness.UsageError as e:
    print(e)
"""
    )
    lines = _run(check, tmp_path).splitlines()
    assert lines[0] == "stripes 320 80 100"
    assert (
        lines[1]
        == "register_dataset: the name 'stripes' is taken by 'synthetic stripes, made on first use'; choose another name"
    )
    assert (tmp_path / "stripes.npz").is_file()


# slow group: the README's block trains and tunes in a process of its own (about 20 s)
@pytest.mark.slow
def test_the_readme_api_block_runs_end_to_end(tmp_path):
    """The README's notebook/script block, as written but for its sizes (1 epoch, 2 seeds, one
    tuning trial of one epoch), on tiny data beside the component file."""
    from tests.helpers import fresh_store, write_npz

    block = next(b for b in _blocks("README.md") if "harness.run(" in b)
    shrunk = block.replace("seeds=3, epochs=10", "seeds=2, epochs=1").replace("trials=20)", "trials=1, epochs=1)")
    assert shrunk.count("epochs=1") == 2, "the README's API block changed: update the sizes this test shrinks"
    (tmp_path / "my_components.py").write_text((EXAMPLES / "my_components.py").read_text())
    fresh_store(tmp_path)
    data = write_npz(tmp_path / "data")
    script = (
        shrunk + "\nprint('TABLE', len(study.table()), 'LATEX', '\\\\begin{tabular' in str(study.export('latex')))\n"
    )
    out = _run(script, tmp_path, timeout=600, HARNESS_DATA_DIR=str(data))
    assert "TABLE 2 LATEX True" in out, out[-2000:]


def test_every_test_the_docs_name_exists():
    """A claim in the README or docs/ names the test that shows it: each `test_...` name and each
    tests/FILE.py(::NAME) cited there must exist, so a renamed or removed test cannot leave a claim
    pointing at nothing."""
    sources = {str(p.relative_to(ROOT))[:-3]: p.read_text() for p in (ROOT / "tests").rglob("test_*.py")}
    defined = {name for text in sources.values() for name in re.findall(r"^(?:async )?def (test_\w+)", text, re.M)}
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for file, _, name in re.findall(r"(tests/(?:\w+/)*test_\w+)\.py(::(\w+))?", text):
            if file not in sources or (
                name and name not in re.findall(r"^(?:async )?def (test_\w+)", sources[file], re.M)
            ):
                missing.append(f"{page.name}: {file}.py{'::' + name if name else ''}")
        metrics = r"test_(acc|loss|nll|ece|brier)"  # `test_acc`, `test_nll_mean`, ...: logged metrics, not tests
        missing += [
            f"{page.name}: {name}"
            for name in re.findall(r"`(test_\w+)`", text)
            if name not in defined and not re.match(metrics, name)
        ]
    assert not missing, missing
