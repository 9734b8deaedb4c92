"""The report, from a fixed set of fake runs (as they come back from the store)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis import stats
from harness.data.datasets import CIFAR10_CLASSES
from harness.report import markdown
from tests import report_tables
from tests.helpers import TEST_ACC, confusion, fake_runs, runs_from
from tests.simulation import compare_all


@pytest.fixture
def text(tmp_path):
    return markdown.write(fake_runs(), "fake", tmp_path).read_text(), tmp_path


def test_statistics_agree_with_the_runs(text):
    md, _ = text
    s = stats.summarize(TEST_ACC["batchnorm"])
    assert (
        f"| batchnorm | test acc (selected epoch) | 3 | {s.mean:.2f} ± {s.std:.2f} | [{s.ci_low:.2f}, {s.ci_high:.2f}] |"
        in md
    )
    c = compare_all(
        dict(zip((2021, 2022, 2023), TEST_ACC["baseline"])),
        {"batchnorm": dict(zip((2021, 2022, 2023), TEST_ACC["batchnorm"]))},
    )["batchnorm"]
    row = report_tables.row(md, "Intervals", "batchnorm")
    assert (
        row["pairs"] == "3"
        and row["Δ (points)"] == f"{c.diff_mean:+.2f}"
        and row["95% CI unadjusted"] == f"[{c.ci_low:.2f}, {c.ci_high:.2f}]"
    )
    assert row["95% CI simultaneous"] == f"[{c.sim_low:.2f}, {c.sim_high:.2f}]" and row["verdict"] == f"**{c.verdict}**"
    tests = report_tables.row(md, "Tests", "batchnorm")
    assert tests["t-test p Holm (raw)"] == f"{c.t_holm:.3f} ({c.t_p:.3f})"
    assert tests["permutation p Holm (raw) [min]"] == f"{c.perm_holm:.3f} ({c.perm_p:.3f}) [{c.perm_min_p:.3f}]"
    assert tests["TOST ±0.50 p Holm"] == f"{c.tost_holm:.3f}"
    assert "| baseline | 3/3 |" in md and "| batchnorm | 3/4 |" in md


def test_plots_and_captions(text):
    md, folder = text
    for png in ("learning_curves.png", "test_accuracy.png", "baseline_difference.png", "confusion_matrices.png"):
        assert (folder / png).stat().st_size > 1000
        i = md.index(f"({png})")
        caption = md[i:].split("\n\n")[1]
        assert caption.startswith("*") and caption.endswith(".*")


def test_failed_run_shown_without_a_number(text):
    md, _ = text
    assert (
        '## <a id="r-failures"></a>Runs that did not finish' in md
        and "see [the runs that did not finish](#r-failures)" in md
    )
    assert "| batchnorm | 2024 | FAILED | non-finite loss in batchnorm seed 2024" in md


def test_per_class_table(text):
    md, _ = text
    # airplane, baseline: 60 + 61 + 60 of 300 right; truck's 40 + 39 + 41 misses land in the airplane column
    precision, recall = 100 * 181 / (181 + 120), 100 * 181 / 300
    assert f"| airplane | {precision:.1f} / {recall:.1f} / {2 * precision * recall / (precision + recall):.1f} |" in md


def test_single_seed_says_no_test_is_possible(tmp_path):
    runs = [r for r in fake_runs() if r.seed == 2021]
    md = markdown.write(runs, "fake", tmp_path).read_text()
    assert "**inconclusive**, decided by the sign-flip permutation test (t-test undefined: fewer than 2 pairs)" in md
    assert "Next: the same command with `--seeds 5` (the runs already finished are kept), or `--seeds auto`" in md


def test_mixed_devices_are_warned_about(tmp_path):
    runs = fake_runs()
    runs[0].tags["harness.env.device"] = "NVIDIA H100"
    md = markdown.write(runs, "fake", tmp_path).read_text()
    assert "**Warning:** the runs compared here differ in device" in md


def test_report_is_deterministic(tmp_path):
    a = markdown.write(fake_runs(), "fake", tmp_path / "a")
    b = markdown.write(fake_runs(), "fake", tmp_path / "b")
    for name in ("report.md", "learning_curves.png", "confusion_matrices.png"):
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes()


def test_defect1_the_headline_delta_is_paired_with_its_pair_count(tmp_path):
    base = {1: 6000, 2: 6100, 3: 6600, 4: 6050, 5: 6150}
    variant = {1: 6080, 2: 6170, 4: 6120, 5: 6230}  # seed 3 failed
    md = markdown.write(runs_from({"baseline": base, "v": variant}), "fake", tmp_path).read_text()
    # not -0.30, the difference of means over other seed sets
    assert report_tables.row(md, "Answer", "v")["Δ vs baseline (pairs)"] == "+0.75 (4)"
    stats_row = report_tables.row(md, "Intervals", "v")
    assert [stats_row[k] for k in ("pairs", "Δ (points)", "95% CI unadjusted")] == ["4", "+0.75", "[0.66, 0.84]"]
    assert stats_row["verdict"] == "**better**"


def test_defect2_mixed_selection_rules_are_not_compared(tmp_path):
    counts = {
        "baseline": {s: 6000 + s for s in range(4)},
        "batchnorm": {s: 6300 + s for s in range(4)},
        "dropout": {s: 6100 + 3 * s for s in range(4)},
    }
    md = markdown.write(runs_from(counts, params={"batchnorm": {"train.select": "last"}}), "fake", tmp_path).read_text()
    assert "- `batchnorm`: **not comparable**: train.select is last here but val_acc for the baseline." in md
    assert report_tables.row(md, "Answer", "batchnorm")["Δ vs baseline (pairs)"] == "not comparable"
    assert (
        "`train.select`, which differs between variants: `baseline` val_acc, `batchnorm` last, `dropout` val_acc" in md
    )
    assert "The family is the 1 comparable variant(s)" in md


def test_defect4_equal_counts_are_decided_by_the_exact_test(tmp_path):
    base = dict(enumerate((5000, 5002, 5000, 5002, 6398, 6404)))
    md = markdown.write(
        runs_from({"baseline": base, "v": {s: k + 3 for s, k in base.items()}}), "fake", tmp_path
    ).read_text()
    row, tests = report_tables.row(md, "Intervals", "v"), report_tables.row(md, "Tests", "v")
    assert row["pairs"] == "6" and row["Δ (points)"] == "+0.03" and tests["t-test p Holm (raw)"] == "– (–)"
    assert tests["permutation p Holm (raw) [min]"] == "0.031 (0.031) [0.031]" and tests["g_z"] == "–"
    assert "**better**, decided by the sign-flip permutation test (t-test undefined: no spread between seeds)" in md


def test_defect5_the_captions_do_not_read_inconclusive_as_no_effect(tmp_path):
    same = {s: 6000 + 10 * s for s in range(4)}
    md = markdown.write(runs_from({"baseline": same, "v": dict(same)}), "fake", tmp_path).read_text()
    assert "**inconclusive**" in md and "no detectable difference" not in md and "detectable ±" not in md
    assert "An interval that crosses zero is inconclusive, not evidence that there is no difference" in md
    assert "crosses zero is no evidence of a difference" not in md


def test_the_seeds_images_interval_and_the_seed_win_rate_come_from_per_image_predictions(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 1000)
    runs = runs_from({"baseline": {s: 600 for s in range(3)}, "v": {s: 610 + s for s in range(3)}}, images=1000)
    for r in runs:
        k = int(np.trace(r.confusion))
        selected = np.where(np.arange(1000) < k, labels, (labels + 1) % 10)
        r.predictions = {"labels": labels, "selected": selected, "last": selected}
    md = markdown.write(runs, "fake", tmp_path).read_text()
    row, tests = report_tables.row(md, "Intervals", "v"), report_tables.row(md, "Tests", "v")
    from harness.analysis import crossed

    # seed s: 10 + s images won, none lost
    rows = [np.r_[np.ones(10 + s, np.int8), np.zeros(990 - s, np.int8)] for s in range(3)]
    b = crossed.interval(rows)
    assert row["95% seeds × images (sensitivity)"] == f"[{b.low:.2f}, {b.high:.2f}]"
    assert tests["seeds won"] == "3/3 [0.29, 1.00]"  # Clopper–Pearson for 3 wins of 3: [0.025^(1/3), 1]


def test_per_class_results_say_when_they_sum_fewer_seeds(tmp_path):
    runs = fake_runs()
    runs[1].confusion, runs[1].classes = None, ()  # baseline seed 2022: its artifact is gone
    md = markdown.write(runs, "fake", tmp_path).read_text()
    assert "summed over fewer seeds: `baseline` from 2 of its 3 finished seeds." in md
    assert "summed over fewer seeds" not in markdown.write(fake_runs(), "fake", tmp_path / "all").read_text()


def test_every_file_the_report_writes_goes_through_the_atomic_writer(tmp_path, monkeypatch):
    """Issue 14, item 3: a kill mid-report leaves the previous file or the new one, never a 0-byte figure."""
    from harness.base import files
    from harness.report import plots

    written = []
    real = files.atomic_write

    def recording(path, payload, fault_point=""):
        written.append(path.name)
        return real(path, payload, fault_point)

    monkeypatch.setattr(plots, "atomic_write", recording)
    monkeypatch.setattr(markdown, "atomic_write", recording)
    markdown.write(fake_runs(), "fake", tmp_path)
    assert sorted(written) == sorted(p.name for p in tmp_path.iterdir())


HOSTILE = [
    "dropout`<img src=x onerror=alert(1)>`",  # an edited harness.variant tag: once escaped its code span
    "[x](https://evil.example/)",
    "$\\bogus$",  # bad mathtext for matplotlib, math for GitHub
    "a,b\u2028c\nd|e",  # a comma, a line separator, a newline, a cell end
    "\x1b[31mred\x1b[0m\r",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_each_format_shows_hostile_text_as_its_characters(value):
    """One function per format (harness/base/escaping.py); each output, rendered, is the text itself."""
    from markdown_it import MarkdownIt

    from harness.base import escaping

    notebook = MarkdownIt("commonmark", {"html": True}).enable("table")  # raw HTML allowed, as notebooks render it
    for piece in (escaping.markdown(value), escaping.code(value), f"| {escaping.markdown(value)} |\n|---|\n"):
        rendered = notebook.render(piece)
        assert "<img" not in rendered and "<a " not in rendered and "\x1b" not in rendered
    plain = escaping.visible(value)
    assert notebook.renderInline(escaping.markdown(value)).replace("&amp;", "&") == (
        plain.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("&amp;", "&")
    )
    assert notebook.renderInline(escaping.code(value)).startswith("<code>")
    assert "\n" not in escaping.latex(value) and "$" not in escaping.latex(value).replace("\\$", "")
    assert "<" not in escaping.html(value) and "\x1b" not in escaping.terminal(value) + plain
    assert "\r" not in escaping.terminal(value) and escaping.terminal("two\nlines") == "two\nlines"


def test_a_report_with_hostile_names_and_an_unreadable_matrix_is_written_and_carries_no_live_markup(tmp_path):
    """Class names with commas, links and mathtext, a variant tag with a backtick and an img tag, and
    one run with no readable confusion matrix: report.md and report.html are written, and neither
    holds an element or a link that the names made."""
    from markdown_it import MarkdownIt

    classes = (HOSTILE[1], HOSTILE[2], HOSTILE[3], *CIFAR10_CLASSES[3:])
    runs = fake_runs()
    for r in runs:
        r.classes = classes if r.classes else r.classes
        if r.variant == "batchnorm":
            r.variant = HOSTILE[0]
    runs[0].confusion = None  # its confusion_matrix.csv could not be read
    md = markdown.write(runs, "fake", tmp_path).read_text()
    page = (tmp_path / "report.html").read_text()
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    for html in (rendered, page):
        assert "<img src=x" not in html and 'src="x"' not in html and 'evil.example/"' not in html
        assert 'href="https://evil' not in html
    assert (tmp_path / "confusion_matrices.png").is_file() and "from 2 of its 3 finished seeds" in md
    no_matrix = fake_runs()
    for r in no_matrix:
        r.confusion = None
    assert (
        "No finished run has a readable confusion matrix"
        in markdown.write(no_matrix, "fake", tmp_path / "none").read_text()
    )


def test_the_confusion_matrix_csv_keeps_any_class_name_and_old_files_still_read(tmp_path):
    from harness.training import evaluation

    classes = (HOSTILE[1], HOSTILE[3], 'say "hi"', "plain")
    cm = np.arange(16).reshape(4, 4)
    evaluation.write_confusion_csv(cm, classes, tmp_path / "cm.csv")
    back, matrix = evaluation.read_confusion_csv(tmp_path / "cm.csv")
    assert back == classes and (matrix == cm).all()
    (tmp_path / "old.csv").write_text("true\\predicted,cat,dog\ncat,3,1\ndog,0,4\n")  # as earlier versions wrote it
    assert evaluation.read_confusion_csv(tmp_path / "old.csv")[0] == ("cat", "dog")
    (tmp_path / "torn.csv").write_text("true\\predicted,a,b,c\na,1,2\n")
    with pytest.raises(ValueError, match="3 class names for a matrix of shape"):
        evaluation.read_confusion_csv(tmp_path / "torn.csv")


def test_figures_draw_names_as_plain_text_and_leave_the_callers_matplotlib_as_it_was(tmp_path):
    """`$\\bogus$` as a class name made every figure with it fail to parse as mathtext."""
    import matplotlib

    from harness.report import plots

    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    classes = ("$\\bogus$", "$x^$", "plain")
    plots.confusion_matrices({"$\\bogus$ variant": np.eye(3, dtype=np.int64) * 5}, classes, tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert dict(matplotlib.rcParams) == before and matplotlib.get_backend() == backend


def test_the_report_says_what_each_variant_changes_and_how_every_run_trained(tmp_path):
    """It never said what a variant changes, its hypothesis, the learning rate or batch size, or a run id."""
    runs = fake_runs()
    for r in runs:
        r.params.update({"train.lr": "0.001", "train.batch_size": "256"})
        if r.variant == "batchnorm":
            r.tags.update({"harness.changes": "model batchnorm=True", "harness.hypothesis": "BatchNorm trains faster."})
            r.params["train.lr"] = "0.01"  # tuned for this variant
    md = markdown.write(runs, "fake", tmp_path).read_text()
    assert (
        "The runs of `baseline` trained with epochs 3, batch size 256, learning rate 0.001, selected by val_acc" in md
    )
    assert "| `batchnorm` | model batchnorm=True | train.lr 0.01 | BatchNorm trains faster. | `p-batchnorm` |" in md
    assert "| `baseline` | – | – | – | `p-baseline` |" in md


def test_figures_fit_long_composed_names_and_show_a_one_epoch_run(tmp_path, monkeypatch):
    """A composed name clipped the evidence figure's axis label; 1-epoch curves were empty panels
    with ticks from 0.945 to 1.050."""
    from harness.report import plots

    drawn = {}
    real = plots.save_figure

    def keep(fig, path, dpi=110):
        fig.canvas.draw()  # lay it out as it is saved
        drawn[path.name] = fig
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    long = "label_smoothing+weight_decay+dropout+batchnorm+cosine"
    runs = fake_runs()
    for r in runs:
        r.history = {k: v[:1] for k, v in r.history.items()}  # one epoch
        r.params["train.epochs"] = "1"
        if r.variant == "batchnorm":
            r.variant = long
    markdown.write(runs, "fake", tmp_path)
    evidence = next(fig for name, fig in drawn.items() if name.startswith("evidence"))
    inside = evidence.bbox
    for ax in evidence.axes:
        box = ax.yaxis.label.get_window_extent()
        assert box.x0 >= inside.x0 - 1 and box.y0 >= inside.y0 - 1 and box.y1 <= inside.y1 + 1
    curves = drawn["learning_curves.png"]
    for ax in curves.axes[:2]:
        assert ax.get_xlim() == (0.5, 1.5) and [t.get_text() for t in ax.get_xticklabels()] == ["1"]
        assert any(line.get_marker() not in ("", "None", None) and len(line.get_xdata()) for line in ax.get_lines())


def test_a_variant_at_chance_is_warned_about_and_a_learning_one_is_not(tmp_path):
    """A study whose runs all scored 10.00% (chance) got a normal verdict and seed advice, no word."""
    from harness.report import comparisons

    runs = fake_runs()
    for r in runs:
        if r.variant == "batchnorm" and r.status == "FINISHED":
            r.confusion, r.metrics["test_acc"] = confusion(100 + r.seed % 3 * 5), 10.0  # 10.0 to 11.0% of 1,000
    assert set(comparisons.at_chance(runs)) == {"batchnorm"}
    md = markdown.write(runs, "fake", tmp_path).read_text()
    assert (
        "> **Warning:** `batchnorm` scores 10." in md
        and "indistinguishable from guessing among 10 classes (10.00%)" in md
    )
    assert "`baseline` scores" not in md
    learning = fake_runs()
    assert comparisons.at_chance(learning) == {}


def test_the_methods_paragraph_states_the_factors_tests_assumptions_and_compute(tmp_path):
    """Issue 39, item 9: the paragraph a paper's checklist asks for, written from the runs: what a
    seed varies and what is fixed, the tests and their correction, what ± means and its n, the
    assumptions, and the compute per run and in all (each run's mean epoch time × its epochs)."""
    runs = fake_runs()
    md = markdown.write(runs, "fake", tmp_path).read_text()
    methods = md.split("## Methods", 1)[1].split("\n## ", 1)[0]
    assert "A seed sets the initial weights, the batch order" in methods and "the test set is fixed" in methods
    assert "with the paired t-test (two-sided), and equivalence within ±0.5 points by TOST" in methods
    assert "Holm's method with Shaffer's refinement at α = 0.05" in methods
    assert "mean ± sd is the sample standard deviation (n − 1) over a variant's finished seeds (n = 3)" in methods
    assert "Assumptions: runs of different seeds are independent" in methods
    done = [r for r in runs if r.status == "FINISHED"]
    total = sum(r.metrics["epoch_seconds_mean"] * float(r.params["train.epochs"]) for r in done)
    assert f"Compute: {total / len(done):.1f} s of training per run on average" in methods, methods
