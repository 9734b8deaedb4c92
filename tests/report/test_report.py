"""The markdown report (harness/report: markdown.py and its sections, plots.py, answer.py,
comparisons.py; the escaping of harness/base/escaping.py), from fixed sets of fake runs as they come
back from the store: the answer first, a line and an evidence figure per variant, tables no wider
than 8 columns whose rows match their headers, the statistics against the runs, seeds on demand, the
test-set floor, the Methods paragraph, warnings (chance, mixed devices, fewer seeds), figures that
fit and are removed when stale, every file written atomically, hostile names shown as their
characters in every format, and every number the older report printed kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.analysis import stats
from harness.data.datasets import CIFAR10_CLASSES
from harness.report import markdown
from tests import report_tables
from tests.helpers import BEFORE, EXAMPLE, TEST_ACC, assert_form, assert_keeps_numbers, confusion, fake_runs, runs_from
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
    """A kill mid-report leaves the previous file or the new one, never a 0-byte figure."""
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
    "dropout`<img src=x onerror=alert(1)>`",  # an edited harness.variant tag whose backtick would end its code span
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
    """A class name such as `$\\bogus$` is drawn as plain text, not parsed as mathtext, and the
    caller's matplotlib settings are left as they were."""
    import matplotlib

    from harness.report import plots

    before = dict(matplotlib.rcParams)
    backend = matplotlib.get_backend()
    classes = ("$\\bogus$", "$x^$", "plain")
    plots.confusion_matrices({"$\\bogus$ variant": np.eye(3, dtype=np.int64) * 5}, classes, tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert dict(matplotlib.rcParams) == before and matplotlib.get_backend() == backend


def test_the_report_says_what_each_variant_changes_and_how_every_run_trained(tmp_path):
    """The report says what each variant changes, its hypothesis, the learning rate and batch size
    its runs trained with, and its MLflow parent run."""
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
    """A long composed name fits in the evidence figure's axis label; 1-epoch curves show their one
    point on one tick, not empty panels with ticks from 0.945 to 1.050."""
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
    """A variant whose runs score at chance (10.00% of 10 classes) is warned about, not given a
    plain verdict and seed advice; a variant that learns is not warned about."""
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
    """The paragraph a paper's checklist asks for, written from the runs: what a seed varies and
    what is fixed, the tests and their correction, what ± means and its n, the assumptions, and the
    compute per run and in all (each run's mean epoch time × its epochs)."""
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


def test_the_first_ten_lines_answer_for_each_variant(example):
    md, _ = example
    head = "\n".join(md.splitlines()[:10])
    compared = markdown.analyse(runs_from(EXAMPLE))[2]
    for v in ("dropout", "batchnorm"):
        t = compared[v].test
        line = next(x for x in head.splitlines() if x.startswith(f"- **{v}**:"))
        assert f"{t.diff_mean:+.2f} points" in line and f"95% CI [{t.ci_low:.2f}, {t.ci_high:.2f}]" in line
        assert "over 3 seeds" in line and f"**{t.verdict}**" in line
        row = report_tables.row(md, "Answer", v)
        assert row["Δ vs baseline (pairs)"] == f"{t.diff_mean:+.2f} (3)" and row["verdict"] == f"**{t.verdict}**"
        assert row["interval"] == f"[{t.ci_low:.2f}, {t.ci_high:.2f}]"
        assert row["test acc (%)"] == "{0.mean:.2f} ± {0.std:.2f}".format(
            stats.summarize([k / 100 for k in EXAMPLE[v].values()])
        )
    assert md.index("## Evidence") < md.index("## Details") < md.index("## Glossary")
    assert_form(md)


def test_an_inconclusive_line_says_how_many_seeds_would_settle_it(tmp_path):
    runs = runs_from({"baseline": {1: 6000, 2: 6100, 3: 5900}, "v": {1: 6080, 2: 5990, 3: 6120}})
    md = markdown.write(runs, "x", tmp_path).read_text()
    c = markdown.analyse(runs)[2]["v"]
    line = next(x for x in md.splitlines() if x.startswith("- **v**:"))
    assert c.test.verdict == "inconclusive" and c.question == "difference"
    assert f"about {c.seeds_needed} seeds would find a 0.50-point difference if there is one" in line
    assert report_tables.row(md, "Tests", "v")["seeds for ±0.50"].startswith(f"{c.seeds_needed} (difference)")


def test_each_comparison_has_its_evidence_figure_with_its_numbers(example):
    md, folder = example
    compared = markdown.analyse(runs_from(EXAMPLE))[2]
    for i, v in enumerate(("batchnorm", "dropout"), start=1):
        png = folder / f"evidence-{i}-{v}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in md
        caption = md[md.index(f"({png.name})") :].split("\n\n")[1]
        t = compared[v].test
        per_seed = ", ".join(f"{s}: {100 * (EXAMPLE[v][s] - EXAMPLE['baseline'][s]) / 10_000:+.2f}" for s in (1, 2, 3))
        assert caption.startswith(f"*Per seed ({per_seed}); Δ {t.diff_mean:+.2f}") and caption.endswith(
            "(10,000 test images).*"
        )
        p = np.mean(list(EXAMPLE[v].values())) / 10_000
        assert f"and {100 * np.sqrt(p * (1 - p) / 10_000):.2f} points" in caption  # the variant's binomial floor


def test_a_figure_of_a_variant_no_longer_compared_is_removed(tmp_path):
    markdown.write(runs_from(EXAMPLE), "example", tmp_path)
    assert (tmp_path / "evidence-1-batchnorm.png").exists()
    # dropout is now the first
    markdown.write(runs_from({k: EXAMPLE[k] for k in ("baseline", "dropout")}), "example", tmp_path)
    assert sorted(p.name for p in tmp_path.glob("evidence-*")) == ["evidence-1-dropout.png"]  # both stale figures gone


def test_many_variants_split_the_per_class_table(tmp_path):
    runs = runs_from(
        {
            "baseline": {1: 6000, 2: 6100, 3: 5900},
            **{f"v{i}": {1: 6000 + i, 2: 6100 - i, 3: 5900 + 2 * i} for i in range(9)},
        }
    )
    md = markdown.write(runs, "wide", tmp_path).read_text()
    per_class = [t for t in report_tables.tables(md) if t.heading.startswith("Per-class")]
    assert [len(t.header) for t in per_class] == [8, 4] and per_class[1].header[1:] == ["v6", "v7", "v8"]
    assert_form(md)


def test_the_fake_runs_report_keeps_every_number_it_printed_before(tmp_path):
    md = markdown.write(fake_runs(), "fake", tmp_path).read_text()
    assert_form(md)
    # only 4000 may go: the glossary's crossed bootstrap of 4000 replicates is the seeds × images interval here
    assert_keeps_numbers((BEFORE / "fake.md").read_text(), md, frozenset({"4000"}))


def _sequential(variants: list[str], max_seeds: int) -> dict[str, str]:
    return {
        "harness.sequential": json.dumps(
            {"min_seeds": 3, "max_seeds": max_seeds, "first_seed": 1, "baseline": "baseline", "variants": variants}
        )
    }


def test_seeds_on_demand_answers_with_the_deciding_look_and_says_when_it_is_open(tmp_path):
    """A design still running is open, not inconclusive; a decided variant's Δ and seeds are those
    of the look that decided it, as the Seeds-on-demand table gives them."""
    runs = runs_from({"baseline": {1: 6000, 2: 6100, 3: 5900}, "v": {1: 6400, 2: 6500, 3: 6300}})
    md = markdown.write(runs, "x", tmp_path / "open", tags=_sequential(["v"], 6)).read_text()
    assert (
        "- **v**: +4.00 points, (−∞, +∞) (repeated 95% CI), over 3 seeds: **open**: the [seeds-on-demand](#g-rule) design is not finished"
        in md
    )
    assert report_tables.row(md, "Answer", "v")["verdict"] == "**open**"
    base = {s: 6000 + 37 * s % 200 for s in range(1, 7)}
    runs = runs_from({"baseline": base, "v": {s: base[s] + 300 + (s * 13 % 7) for s in range(1, 7)}})
    md = markdown.write(runs, "x", tmp_path / "decided", tags=_sequential(["v"], 8)).read_text()
    look = report_tables.row(md, "Seeds on demand", "v")
    answer_row = report_tables.row(md, "Answer", "v")
    assert answer_row["Δ vs baseline (pairs)"] == look["Δ at the look (pairs)"] == "+3.05 (3)"
    assert (
        answer_row["interval"] == look["interval (level)"] and answer_row["verdict"] == look["verdict"] == "**better**"
    )
    assert (
        "- **v**: +3.05 points, [+2.89, +3.21] (repeated 95% CI), over 3 seeds: **better** by the [seeds-on-demand rule](#g-rule)."
        in md
    )
    assert "*Per seed (" in md and "Δ +3.05 at the deciding look (3 pairs; " in md
    assert_form(md)


def test_fewer_than_three_pairs_read_the_same_in_the_line_and_the_table(tmp_path):
    md = markdown.write(runs_from({"baseline": {1: 6000, 2: 6100}, "v": {1: 6050, 2: 6180}}), "x", tmp_path).read_text()
    line = next(x for x in md.splitlines() if x.startswith("- **v**:"))
    assert (
        line
        == "- **v**: +0.65 points over 2 seeds: **inconclusive**: no test can decide on fewer than 3 seeds on which both finished. "
        "Next: the same command with `--seeds 5` (the runs already finished are kept), or `--seeds auto` to add seeds "
        "until each comparison is decided."
    )
    assert (
        report_tables.row(md, "Answer", "v")["verdict"]
        == report_tables.row(md, "Intervals", "v")["verdict"]
        == "**inconclusive**"
    )


def test_an_empty_store_removes_the_figures_of_the_report_before(tmp_path):
    markdown.write(fake_runs(), "fake", tmp_path)
    markdown.write([], "fake", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.md"]


def test_the_glossary_never_divides_by_an_empty_family(tmp_path):
    runs = runs_from(
        {"baseline": {1: 6000, 2: 6100, 3: 5900}, "v": {1: 6080, 2: 5990, 3: 6120}},
        params={"v": {"train.select": "last"}},
    )
    md = markdown.write(runs, "x", tmp_path).read_text()
    assert "/0" not in md and "no variant is comparable with the baseline here" in md.lower()
    assert_form(md)


def test_each_variant_has_its_test_set_floor_and_the_report_says_when_seeds_are_within_it(example):
    """The binomial sd of the test accuracy beside the seed spread, and a note for a variant whose
    seeds spread no more than that."""
    md, _ = example
    for v, seeds in EXAMPLE.items():
        p = np.mean(list(seeds.values())) / 10_000
        assert (
            report_tables.row(md, "Accuracy", v)["test-set floor (sd)"] == f"{100 * np.sqrt(p * (1 - p) / 10_000):.2f}"
        )
    note = next(line for line in md.splitlines() if "within the test-set floor" in line)
    assert "`batchnorm` (seed sd 0.47, floor 0.48)" in note and "`baseline`" not in note and "`dropout`" not in note


def _with_ledgers(runs, rng, without=()):
    """Give each run a ledger of 1,000 images (its counts right, the rest one class off) with
    probabilities that put 0.5 on its predicted class, and the calibration those give."""
    from harness.training import evaluation

    labels = rng.integers(0, 10, 1000)
    for r in runs:
        k = int(np.trace(r.confusion))
        right = rng.permutation(1000) < k
        selected = np.where(right, labels, (labels + 1) % 10)
        probs = np.full((1000, 10), 0.5 / 9)
        probs[np.arange(1000), selected] = 0.5
        r.predictions = {"labels": labels, "selected": selected, "last": selected}
        if r.run_id not in without:
            r.predictions["probs"] = probs.astype(np.float16)
            r.metrics.update(evaluation.calibration(r.predictions["probs"], labels))
    return runs


def test_the_calibration_section_gives_each_variant_its_calibration_churn_and_ensemble_and_each_comparison_its_flips(
    tmp_path,
):
    from harness.analysis import images

    runs = _with_ledgers(
        runs_from({"baseline": {s: 600 for s in range(3)}, "v": {s: 650 for s in range(3)}}, 1000),
        np.random.default_rng(2),
    )
    md = markdown.write(runs, "fake", tmp_path).read_text()
    assert_form(md)
    base = [r.predictions for r in runs if r.variant == "baseline"]
    mine = [r.predictions for r in runs if r.variant == "v"]
    row = report_tables.row(md, "Calibration and images", "v")
    assert row["churn"] == f"{100 * images.churn(mine):.1f}%"
    acc, nll = images.ensemble(mine)
    assert row["ensemble acc"] == f"{acc:.2f}" and row["ensemble NLL"] == f"{nll:.3f}"
    ece = [r.metrics["test_ece"] for r in runs if r.variant == "v"]
    assert row["ECE"] == f"{np.mean(ece):.4f} ± {np.std(ece, ddof=1):.4f}"
    f = images.flips(base, mine, 10)
    flips = report_tables.row(md, "v against baseline: calibration and flips", "**all**")
    assert flips == {
        "class": "**all**",
        "fixed by `v`": str(f.fixed.sum()),
        "broken by `v`": str(f.broken.sum()),
        "net": f"{int(f.fixed.sum() - f.broken.sum()):+d}",
    }
    assert "(reliability-1-v.png)" in md and (tmp_path / "reliability-1-v.png").is_file()
    assert "not a verdict" in md


def test_runs_without_probabilities_are_named_and_a_store_without_any_has_no_calibration_section(tmp_path):
    runs = _with_ledgers(
        runs_from({"baseline": {s: 600 for s in range(2)}, "v": {s: 650 for s in range(2)}}, 1000),
        np.random.default_rng(3),
        without={"v1"},
    )
    md = markdown.write(runs, "fake", tmp_path / "mixed").read_text()
    assert "No class probabilities in the ledgers of `v` seed 1 (recorded before the ledger kept them)" in md
    assert report_tables.row(md, "Calibration and images", "v")["ensemble acc"] == "–"
    assert "reliability-1-v.png" not in md  # a curve needs every seed's probabilities
    old = _with_ledgers(
        runs_from({"baseline": {0: 600}, "v": {0: 650}}, 1000), np.random.default_rng(4), without={"baseline0", "v0"}
    )
    assert "## Calibration and images" not in markdown.write(old, "fake", tmp_path / "old").read_text()


def test_a_reliability_figure_no_longer_linked_is_removed(tmp_path):
    counts = {"baseline": {s: 600 for s in range(2)}, "v": {s: 650 for s in range(2)}}
    markdown.write(_with_ledgers(runs_from(counts, 1000), np.random.default_rng(5)), "fake", tmp_path)
    assert (tmp_path / "reliability-1-v.png").is_file()
    without = _with_ledgers(runs_from(counts, 1000), np.random.default_rng(5), without={"v1"})
    assert "reliability-1-v.png" not in markdown.write(without, "fake", tmp_path).read_text()
    assert not (tmp_path / "reliability-1-v.png").exists()


def test_a_flip_table_over_many_classes_shows_the_ten_with_most_flips_then_the_rest_in_one_row():
    from harness.analysis import images
    from harness.report import images_section

    fixed, broken = np.arange(12), np.zeros(12, dtype=np.int64)  # class c: c images fixed
    lines = images_section._flip_table(
        images.Flips(fixed, broken, 1000, (2, 2)), "baseline", "v", tuple(f"c{i}" for i in range(12))
    )
    rows = [line for line in lines if line.startswith("| ")][1:]  # after the header (its rule starts "|-")
    assert [r.split(" | ")[0] for r in rows[:10]] == [f"| c{i}" for i in range(11, 1, -1)]
    assert rows[10] == "| 2 other classes | 1 | 0 | +1 |" and rows[11] == "| **all** | 66 | 0 | +66 |"
