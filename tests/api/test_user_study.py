"""The user's own study: folder: and npz: datasets, exports for pandas and papers, and the Python
API (harness.run / harness.load) with the CLI's own checks and messages, in a real notebook too."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import harness
from harness.base.errors import UsageError
from harness.data import datasets, loading
from harness.settings import experiment_file
from tests.helpers import ROOT, component_file, fresh_store, image_folder, make_arrays
from tests.helpers import run_process as cli


def _read(name: str, image_size: int = 0):
    return loading.read_source(datasets.get(name, image_size), Path("unused-data-dir"))


def test_a_folder_without_parts_holds_out_a_seeded_fifth_of_each_class(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    image_folder(tmp_path / "shapes")
    d = datasets.get(f"folder:{tmp_path / 'shapes'}")
    assert d.classes == ("horizontal", "vertical") and d.image_shape == (1, 16, 16)
    assert "20% of each class held out as the test set (seed 0)" in d.source
    source = _read(f"folder:{tmp_path / 'shapes'}")
    a = source.arrays
    assert (len(a.y_train), len(a.y_test)) == (16, 4) and np.bincount(a.y_test).tolist() == [2, 2]
    png = np.asarray(Image.open(tmp_path / "shapes" / "horizontal" / "000.png"))
    assert any(np.array_equal(x[..., 0], png) for x in np.concatenate([a.x_train, a.x_test]))  # as decoded, unresized
    # Decoded again from scratch (another machine, an emptied cache): the same bytes, the same content hash.
    for f in (tmp_path / "cache" / "datasets").iterdir():
        f.unlink()
    assert _read(f"folder:{tmp_path / 'shapes'}").digest == source.digest
    # A changed image is other data: another hash.
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(tmp_path / "shapes" / "vertical" / "003.png")
    assert _read(f"folder:{tmp_path / 'shapes'}").digest != source.digest


def test_a_folder_with_train_and_test_uses_them_and_other_sizes_need_an_image_size(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    image_folder(tmp_path / "d" / "train", sizes=((16, 16), (20, 24)), mode="RGB")
    image_folder(tmp_path / "d" / "test", sizes=((16, 16),), per_class=3, mode="RGB")
    name = f"folder:{tmp_path / 'd'}"
    with pytest.raises(
        UsageError,
        match=r"the images have 2 sizes \(16×16 in train/horizontal/000.png, 20×24 in train/horizontal/001.png\); "
        r"set data.image_size = S to resize every image to S×S",
    ):
        datasets.get(name)
    a = _read(name, 12).arrays
    assert a.x_train.shape == (20, 12, 12, 3) and a.x_test.shape == (6, 12, 12, 3)
    assert datasets.get(name, 12).source.endswith("test: its train/ and test/ subfolders)")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height grey pixels, with no pixels (PIL reads the header first)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda r: (r / "a").mkdir(parents=True), r"the class folder .*a' holds no images"),
        (lambda r: r.mkdir(), r"has no class subfolders"),
        (
            lambda r: (image_folder(r), (r / "vertical" / "bad.png").write_bytes(b"not a png")),
            r"cannot read the image .*bad\.png.*; remove or replace it",
        ),
        (
            lambda r: image_folder(r, per_class=1),
            r"class 'horizontal' has 1 image; holding out a test set needs at least 2 per class",
        ),
        (
            lambda r: (image_folder(r / "train"), image_folder(r / "test", classes=("horizontal", "diagonal"))),
            r"test/diagonal is a class with no train/diagonal folder",
        ),
        (  # 48 bytes that say 20000×20000: PIL's DecompressionBombError is one line, not a traceback
            lambda r: (image_folder(r), (r / "vertical" / "bomb.png").write_bytes(_png_header(20000, 20000))),
            r"the image .*bomb\.png' has more pixels than the limit of 89,478,485 \(PIL's guard against decompression",
        ),
        (  # past the limit but under twice it: PIL only warns, and decoding would take 1.1 GB
            lambda r: (image_folder(r), (r / "vertical" / "big.png").write_bytes(_png_header(10000, 10000))),
            r"the image .*big\.png' has more pixels \(10000×10000\) than the limit",
        ),
        (
            lambda r: (
                image_folder(r),
                (r / "vertical" / "away.png").symlink_to(
                    image_folder(r.parent / "elsewhere") / "horizontal" / "000.png"
                ),
            ),
            r"away\.png' is a link to .*elsewhere/horizontal/000\.png', outside the folder; copy the image in",
        ),
    ],
)
def test_bad_image_folders_are_one_line_before_anything_is_written(tmp_path, monkeypatch, make, message):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    make(tmp_path / "imgs")
    with pytest.raises(UsageError, match=message) as caught:
        _read(f"folder:{tmp_path / 'imgs'}")
    assert "\n" not in str(caught.value) and not (tmp_path / "cache" / "datasets").exists()


def test_a_missing_folder_and_image_size_on_other_data_are_refused(tmp_path):
    (tmp_path / "loop.npz").symlink_to(tmp_path / "loop.npz")  # a link loop, not a missing file to download
    with pytest.raises(
        UsageError, match=r"loop\.npz' is a link that leads to no file \(a loop, or its target is gone\)"
    ):
        datasets.get(f"npz:{tmp_path / 'loop.npz'}")
    with pytest.raises(UsageError, match=r"is not a folder; expected one subfolder of images per class"):
        datasets.get(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(
        UsageError, match=r"data.image_size: 8 resizes the images of a folder: dataset; 'digits' is used as it is"
    ):
        experiment_file.load_experiment(None, ["data.image_size=8"], **{"data.dataset": "digits"})


def _npz(path: Path, **arrays) -> Path:
    base = make_arrays(n_train=60, n_test=20, classes=3, shape=(16, 16, 3))
    np.savez(path, **{**base, **arrays})
    return path


def test_an_npz_dataset_takes_its_class_names_and_shape_from_the_file(tmp_path):
    path = _npz(tmp_path / "mine.npz", class_names=np.array(["cat_5%", "dog", "eel"]))
    d = datasets.get(f"npz:{path}")
    assert d.classes == ("cat_5%", "dog", "eel") and d.image_shape == (3, 16, 16)
    assert _read(f"npz:{path}").arrays.x_train.shape == (60, 16, 16, 3)
    assert datasets.get(f"npz:{_npz(tmp_path / 'plain.npz')}").classes == ("0", "1", "2")


@pytest.mark.parametrize(
    "arrays, message",
    [
        (  # N×H×W grey images are taken (their channel axis added); N×H is not an image
            {"x_train": np.zeros((60, 16), np.uint8)},
            r"x_train has shape \(60, 16\); expected uint8 images N×H×W×C with C = 1 or 3 \(or N×H×W grey\)",
        ),
        ({"class_names": np.array(["a", "b"])}, r"class_names names 2 classes but the labels reach 2"),
        ({"class_names": np.array(["a", "a", "b"])}, r"class_names holds a name twice"),
        ({"x_test": np.zeros((20, 16, 16, 3), np.float32)}, r"x_test has dtype float32; expected uint8"),
        ({"y_train": np.zeros(60, np.uint8)}, r"y_train holds 1 classes; expected all 3"),
    ],
)
def test_bad_npz_datasets_are_one_line(tmp_path, arrays, message):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UsageError, match=message):
        _read(f"npz:{path}")
    with pytest.raises(UsageError, match=r"npz:.*nowhere.npz.* is not a file"):
        datasets.get(f"npz:{tmp_path / 'nowhere.npz'}")
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(UsageError, match=r"is not a readable \.npz file"):
        datasets.get(f"npz:{tmp_path / 'torn.npz'}")


# ---- exports -------------------------------------------------------------------------------------

GOLDEN = Path(__file__).parents[1] / "fixtures" / "export_comparison.tex"
COMPARISON = pd.DataFrame(
    [
        {
            "variant": "baseline",
            "seeds": 5,
            "test_acc_mean": 62.104,
            "test_acc_sd": 0.4512,
            "diff_vs_baseline": None,
            "ci_low": None,
            "ci_high": None,
            "p_holm": None,
            "verdict": "baseline",
        },
        {
            "variant": "label_smoothing+dropout",
            "seeds": 5,
            "test_acc_mean": 63.3,
            "test_acc_sd": 0.5,
            "diff_vs_baseline": 1.196,
            "ci_low": 0.41,
            "ci_high": 1.98,
            "p_holm": 0.0004,
            "verdict": "better",
        },
        {
            "variant": "cut_50%",
            "seeds": 1,
            "test_acc_mean": 60.0,
            "test_acc_sd": float("nan"),
            "diff_vs_baseline": -2.1,
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "p_holm": float("nan"),
            "verdict": "inconclusive",
        },
    ]
)


def test_the_latex_table_escapes_names_and_matches_its_golden_file():
    from harness.base import escaping
    from harness.report import export

    assert escaping.latex("label_smoothing 5% {x} #1 & $y ~ ^z \\") == (
        r"label\_smoothing 5\% \{x\} \#1 \& \$y \textasciitilde{} \textasciicircum{}z \textbackslash{}"
    )
    text = export.render(COMPARISON, "latex", "comparison", "my_study")
    assert text == GOLDEN.read_text()
    assert (
        r"label\_smoothing+dropout & 5 & $63.30 \pm 0.50$ & $+1.20$ & [$+0.41$, $+1.98$] & $<0.001$ & better \\" in text
    )
    assert r"cut\_50\% & 1 & $60.00$ & $-2.10$ & -- & -- & inconclusive \\" in text
    assert "\\caption{Test accuracy over seeds" in text  # the store's name only when asked (a paper names its study)
    assert "\\caption{my\\_study: test accuracy" in export.render(COMPARISON, "latex", "comparison", "my_study", True)
    compact = export.render(
        COMPARISON[["variant", "diff_vs_baseline", "ci_low", "ci_high", "verdict"]], "latex", "compact", "s"
    )
    assert r"label\_smoothing+dropout & $+1.20$ [$+0.41$, $+1.98$] & better \\" in compact
    assert r"baseline & -- & baseline \\" in compact and "{lrl}" in compact


def test_the_latex_table_compiles_with_a_real_tex_engine(tmp_path):
    import os
    import shutil

    from harness.report import export

    if shutil.which("pdflatex") is None:
        if os.environ.get("HARNESS_CI"):
            pytest.fail("CI installs TeX (texlive-latex-base, texlive-latex-recommended): pdflatex must be there")
        pytest.skip(
            "pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended); the golden-file test checks the text"
        )
    statistics = pd.DataFrame(  # the widest table: ten columns, a long composed name
        [
            {
                "variant": "label_smoothing+dropout+weight_decay+batchnorm",
                "pairs": 12,
                "diff_mean": 1.234,
                "diff_sd": 0.5,
                "ci_low": 0.9,
                "ci_high": 1.6,
                "t_p": 0.0004,
                "permutation_p": 0.0005,
                "p_holm": 0.0012,
                "hedges_g": 2.3,
                "verdict": "inconclusive",
            }
        ]
    )
    tables = [export.render(COMPARISON, "latex", "comparison", "my_study")]
    tables.append(export.render(statistics, "latex", "statistics", "my_study"))
    tables.append(
        export.render(
            COMPARISON[["variant", "diff_vs_baseline", "ci_low", "ci_high", "verdict"]], "latex", "compact", "s"
        )
    )
    (tmp_path / "tables.tex").write_text("\n".join(tables))
    (tmp_path / "doc.tex").write_text(  # a plain article: its \linewidth is what a table must fit
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n\\input{tables.tex}\n\\end{document}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Overfull \\hbox" not in log  # the statistics table ran 147 pt past a plain article's line


def test_csv_and_json_are_tidy_for_pandas():
    from harness.report import export

    back = pd.read_csv(io.StringIO(export.render(COMPARISON, "csv", "comparison", "s")))
    pd.testing.assert_frame_equal(
        back, COMPARISON.astype({"diff_vs_baseline": float, "ci_low": float, "ci_high": float, "p_holm": float})
    )
    records = json.loads(export.render(COMPARISON, "json", "comparison", "s"))
    assert (
        records[0]["diff_vs_baseline"] is None and records[2]["test_acc_sd"] is None and records[1]["p_holm"] == 0.0004
    )
    assert pd.DataFrame(records).shape == COMPARISON.shape


def test_the_python_api_runs_an_npz_dataset_and_raises_the_clis_errors(tmp_path, monkeypatch, clean_registry):
    monkeypatch.chdir(tmp_path)
    fresh_store(tmp_path)
    _npz(tmp_path / "mine.npz", class_names=np.array(["cat_5%", "dog", "eel"]))
    component_file(tmp_path, "api_components")
    study = harness.run(
        variants=["baseline", "wide"],
        seeds=3,
        epochs=1,
        dataset="npz:mine.npz",
        components="api_components.py",
        device="cpu",
        name="api_study",
        batch_size=16,
        threads=1,
    )
    table = study.table()
    assert (
        list(table.variant) == ["baseline", "wide"] and list(table.seeds) == [3, 3] and table.verdict[0] == "baseline"
    )
    assert table.verdict[1] in ("better", "worse", "equivalent", "inconclusive")
    runs = study.runs()
    assert len(runs) == 6 and runs.run_id.str.fullmatch(r"[0-9a-f]{32}").all()
    assert list(study.statistics().variant) == ["wide"]
    with pytest.raises(
        UsageError, match=r"^table effects: experiment 'api_study' has a list design; effects come from a factorial"
    ):
        study.effects()
    assert study.report_path == tmp_path / "reports" / "api_study" / "report.md"
    inline = study._repr_markdown_()
    assert inline.startswith("# Ablation report: api_study") and "](reports/api_study/" in inline

    loaded = harness.load("api_study")
    pd.testing.assert_frame_equal(loaded.table(), table)
    assert loaded.export("latex").count(r"\\") >= 3 and "cat" not in loaded.export("csv")
    exported = cli("export", "--experiment", "api_study", "--format", "csv", cwd=tmp_path)
    assert exported.returncode == 0 and exported.stdout == loaded.export("csv")
    store = (tmp_path / "mlflow.db").read_bytes()
    slip = cli("export", "--experiment", "api_study", "--format", "csv", "--out", "mlflow.db", "--force", cwd=tmp_path)
    assert slip.returncode == 2 and slip.stderr == (
        "error: --out: 'mlflow.db' is the MLflow store this command reads; write the table elsewhere\n"
    )
    with pytest.raises(UsageError, match="is the MLflow store this command reads"):
        loaded.export("csv", out=tmp_path / "mlflow.db", force=True)
    assert (tmp_path / "mlflow.db").read_bytes() == store  # a slip for mlflow.csv leaves the store as it was
    first = cli("export", "--experiment", "api_study", "--format", "csv", "--out", "t.csv", cwd=tmp_path)
    again = cli("export", "--experiment", "api_study", "--format", "csv", "--out", "t.csv", cwd=tmp_path)
    assert first.returncode == 0 and again.returncode == 2
    assert again.stderr == "error: --out: 't.csv' exists; pass --force to replace it, or write elsewhere\n"
    with pytest.raises(UsageError, match=r"^out: '.*t.csv' exists; pass force=True to replace it"):
        loaded.export("csv", out=tmp_path / "t.csv")
    forced = cli("export", "--experiment", "api_study", "--format", "json", "--out", "t.csv", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and (tmp_path / "t.csv").read_text().startswith("[")

    def listing() -> list[str]:  # SQLite's -wal and -shm files come and go with connections
        return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm")))

    before = listing()
    for kwargs, flags in [
        ({"lr": -1}, ["--set", "train.lr=-1"]),
        ({"epochs": "abc"}, ["--set", 'train.epochs="abc"']),
        ({"dataset": "npz:nowhere.npz"}, ["--dataset", "npz:nowhere.npz"]),
    ]:
        with pytest.raises(UsageError) as caught:
            harness.run(variants="baseline", device="cpu", **kwargs)
        proc = cli("run", "--variants", "baseline", "--device", "cpu", *flags, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr == f"error: {caught.value}\n"
    with pytest.raises(UsageError, match=r"run: unknown setting 'learning_rate'; allowed: .*\blr\b"):
        harness.run(learning_rate=0.1)
    with pytest.raises(
        UsageError,
        match=r"experiment: the store sqlite:///mlflow.db holds no runs of experiment 'nothing'|no experiment named 'nothing'",
    ):
        harness.load("nothing")
    assert listing() == before  # a refused call writes nothing


# slow group: starts a real notebook kernel and trains in it (about 25 s)
@pytest.mark.slow
def test_a_real_notebook_runs_a_tiny_study_and_shows_the_table_and_the_report(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    fresh_store(tmp_path)
    component_file(tmp_path, "nb_components")
    cells = [
        "import harness",
        'study = harness.run(variants=["baseline", "wide"], seeds=2, epochs=1, dataset="digits", components="nb_components.py",\n'
        '                    device="cpu", name="notebook", batch_size=64, threads=1)',
        "study.table()",
        "study",
        'study.export("latex")',
        "harness.run(lr=-1)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells])
    env_path = str(ROOT)
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"import sys; sys.path.insert(0, {env_path!r})"))
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    ran, table, shown, exported, refused = (nb.cells[i].outputs for i in (2, 3, 4, 5, 6))
    assert not [o for o in ran if o.get("name") == "stderr"]  # no red fragments: the widget, not tqdm's warning
    html = next(o for o in table if o.output_type == "execute_result").data["text/html"]
    assert "<table" in html and "baseline" in html and "wide" in html and "verdict" in html
    result = next(o for o in shown if o.output_type == "execute_result").data
    assert (
        result["text/markdown"].startswith("# Ablation report: notebook")
        and "](reports/notebook/" in result["text/markdown"]
    )
    assert (
        "<h1>Ablation report: notebook</h1>" in result["text/html"]
        and 'src="data:image/png;base64,' in result["text/html"]
    )
    assert "<style>" not in result["text/html"]  # the report's page style would restyle the whole notebook
    latex = next(o for o in exported if o.output_type == "execute_result").data["text/plain"]
    assert latex.startswith("% harness export") and "\\toprule\n" in latex  # the text itself, not its escaped repr
    error = next(o for o in refused if o.output_type == "error")
    shown = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in error.traceback]  # without its colours
    assert shown[-1] == f"UsageError: {error.evalue}\n" and error.evalue.startswith("train.lr: -1")
    assert not any("File " in line or "harness/" in line for line in shown)  # no frames of the harness's internals
    assert (tmp_path / "reports" / "notebook" / "report.md").is_file()


def test_per_class_metric_names_are_ones_mlflow_accepts_and_stay_distinct():
    from harness.training.results import per_class_keys

    # the shipped names, unchanged
    assert per_class_keys(("cat", "aquarium_fish")) == [
        "test_f1_cat",
        "test_f1_aquarium_fish",
    ]
    assert per_class_keys(("cat (5%)", "dog")) == ["test_f1_cat _5__", "test_f1_dog"]
    assert per_class_keys(("a%", "a#", "b")) == ["test_f1_0_a_", "test_f1_1_a_", "test_f1_2_b"]
    assert per_class_keys(("a/../b", "x" * 300)) == ["test_f1_a_.._b", "test_f1_" + "x" * 200]


def test_folder_edge_cases_16_bit_grey_hidden_folders_one_class_and_a_lone_train_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    root = image_folder(tmp_path / "deep")
    deep = np.full((16, 16), 40000, np.uint16)
    Image.fromarray(deep).save(root / "vertical" / "000.png")  # a 16-bit grey PNG
    (root / "__MACOSX" / "x").mkdir(parents=True)  # an unzip's leftovers and hidden folders are skipped
    (root / "vertical" / ".thumbs").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "vertical" / ".thumbs" / "t.png")
    a = _read(f"folder:{root}").arrays
    x = np.concatenate([a.x_train, a.x_test])
    assert len(x) == 20 and any((im[..., 0] == 40000 >> 8).all() for im in x)  # its top 8 bits, not clipped to 255
    image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(UsageError, match=r"has 1 class; a classifier needs at least 2"):
        datasets.get(f"folder:{tmp_path / 'one'}")
    image_folder(tmp_path / "lone" / "train")
    with pytest.raises(
        UsageError, match=r"has a train/ folder but no test/; give both, or one subfolder of images per class"
    ):
        datasets.get(f"folder:{tmp_path / 'lone'}")


def test_the_run_key_names_the_datas_content_however_its_path_is_spelled(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    image_folder(tmp_path / "shapes")
    spellings = ["folder:shapes", "folder:./shapes", f"folder:{tmp_path / 'shapes'}"]
    identities = {_read(name).identity for name in spellings}
    assert len(identities) == 1 and identities.pop().startswith("folder:")
    _npz(tmp_path / "a.npz", y_train=np.arange(60) % 3)  # numpy's default int64 labels are taken when they fit in uint8
    assert (
        _read("npz:a.npz").arrays.y_train.dtype == np.uint8
        and _read("npz:a.npz").identity == _read(f"npz:{tmp_path / 'a.npz'}").identity
    )


def test_an_export_writes_no_infinities_and_never_replaces_a_link_or_a_folder(tmp_path):
    from harness.base.files import check_target
    from harness.report import export

    df = COMPARISON.copy()
    df.loc[1, ["ci_low", "ci_high"]] = [float("-inf"), float("inf")]
    assert json.loads(export.render(df, "json", "comparison", "s"))[1]["ci_low"] is None
    assert "inf" not in export.render(df, "latex", "comparison", "s")
    (tmp_path / "target.csv").write_text("keep")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    for out, message in [
        (tmp_path / "link.csv", "is a link"),
        (tmp_path, "is a directory"),
        (tmp_path / "no" / "t.csv", "does not exist"),
    ]:
        with pytest.raises(UsageError, match=message):
            check_target(out, "--out")
    (tmp_path / "locked.csv").write_text("keep")
    (tmp_path / "locked.csv").chmod(0o444)
    sqlite3.connect(tmp_path / "optuna.db").execute("create table t (x)").connection.commit()
    long = "a" * 300 + ".csv"
    for out, message in [
        ("newdir/", r"^--out: 'newdir/' names a folder; expected the path of a file to write$"),
        (long, r"^--out: 'a{60}'\.\.\.: File name too long$"),
        (str(tmp_path / "target.csv"), "exists; pass --force to replace it"),
        (str(tmp_path / "optuna.db"), "is a SQLite database .*; nothing is written over one$"),
    ]:
        with pytest.raises(UsageError, match=message):
            check_target(out, "--out")
    with pytest.raises(UsageError, match=r"^--out: '.*locked.csv' is read-only; write elsewhere$"):
        check_target(tmp_path / "locked.csv", "--out", force=True)
    with pytest.raises(UsageError, match="is a SQLite database"):
        check_target(tmp_path / "optuna.db", "--out", force=True)
    assert check_target(tmp_path / "target.csv", "--out", force=True) == tmp_path / "target.csv"
    assert (tmp_path / "target.csv").read_text() == "keep" and (tmp_path / "link.csv").is_symlink()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"components": 5}, r"^components: 5 is not allowed; expected a string or a list of strings$"),
        ({"seeds": []}, r"^seeds: \[\] is not allowed; expected a non-empty list"),
        ({"variants": ["baseline,dropout"]}, r"^variants: \['baseline,dropout'\] is not allowed; .*no commas"),
        ({"lr": {"a": 1}}, r"^train.lr: \{'a': 1\} is not allowed; expected bool or int or float or str$"),
        ({"rerun": "yes"}, r"^rerun: 'yes' is not allowed; expected bool$"),
    ],
)
def test_the_api_refuses_values_of_the_wrong_type_in_one_line(kwargs, message):
    with pytest.raises(UsageError, match=message):
        harness.run(**kwargs)
    with pytest.raises(UsageError, match=r"^experiment: 5 is not allowed"):
        harness.load(5)


def test_the_data_mistakes_a_new_user_makes_are_named_with_their_fix_and_grey_nhw_arrays_are_taken(
    tmp_path, monkeypatch
):
    """NCHW arrays, float images in [0, 1], labels from 1 and a class folder one level too deep are
    refused with their fix in the message; an N×H×W grey npz is taken."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    base = make_arrays(n_train=60, n_test=20, classes=3, shape=(16, 16, 3))
    nchw = _npz(tmp_path / "nchw.npz", x_train=base["x_train"].transpose(0, 3, 1, 2))
    with pytest.raises(
        UsageError, match=r"channels first \(N×C×H×W\); save the images channels last: x.transpose\(0, 2, 3, 1\)$"
    ):
        datasets.get(f"npz:{nchw}")
    floats = _npz(tmp_path / "floats.npz", x_train=base["x_train"] / 255.0, x_test=base["x_test"] / 255.0)
    with pytest.raises(
        UsageError, match=r"has dtype float64; expected uint8; its values lie in \[0, 1\]: save \(x \* 255\)"
    ):
        _read(f"npz:{floats}")
    one_based = _npz(tmp_path / "one.npz", y_train=base["y_train"] + 1, y_test=base["y_test"] + 1)
    with pytest.raises(UsageError, match=r"the labels run from 1 to 3; the first class is label 0: save y - 1$"):
        datasets.get(f"npz:{one_based}")
    image_folder(tmp_path / "deep" / "all")
    with pytest.raises(
        UsageError,
        match=r"one class folder, 'all', which holds folders: are they the classes\? Then use folder:.*deep/all$",
    ):
        datasets.get(f"folder:{tmp_path / 'deep'}")
    grey = make_arrays(n_train=60, n_test=20, classes=3, shape=(16, 16, 1))
    flat = _npz(
        tmp_path / "grey.npz",
        x_train=grey["x_train"][..., 0],
        x_test=grey["x_test"][..., 0],
        y_train=grey["y_train"],
        y_test=grey["y_test"],
    )
    assert datasets.get(f"npz:{flat}").image_shape == (1, 16, 16)
    assert _read(f"npz:{flat}").arrays.x_train.shape == (60, 16, 16, 1)
