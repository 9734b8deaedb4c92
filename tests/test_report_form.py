"""Issue 25: the report's form. The answer comes first, each comparison has its evidence figure,
no table is wider than 8 columns and every row has its header's cell count (as a GFM parser reads
them), every link to the glossary lands, every number the report printed before the change still
appears (tests/fixtures/reports-before-answer-first: the reports of the same runs made by the code
before it), and report.html is the same text, self-contained and rebuilt byte for byte; it is
rendered in headless Chromium with the network blocked (no horizontal scroll at 1280 px, the
answer in the first screen, every image loaded, nothing fetched, the tables sortable)."""

from __future__ import annotations

import html as html_mod
import json
import os
import re

import numpy as np
import pytest

from harness.analysis import stats
from harness.report import markdown
from tests import report_tables
from tests.chromium import CHROMIUM, OFFLINE, chromium
from tests.helpers import BEFORE, assert_form, assert_keeps_numbers, fake_runs, runs_from

# The example: three variants of three seeds, of 10,000 test images.
EXAMPLE = {
    "baseline": {1: 6010, 2: 6100, 3: 5950},
    "dropout": {1: 5890, 2: 5760, 3: 5610},
    "batchnorm": {1: 6230, 2: 6210, 3: 6300},
}


@pytest.fixture
def example(tmp_path):
    return markdown.write(runs_from(EXAMPLE), "example", tmp_path).read_text(), tmp_path


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
    # issue 39, item 7: the glossary's crossed bootstrap of 4000 replicates is the seeds × images interval now
    assert_keeps_numbers((BEFORE / "fake.md").read_text(), md, frozenset({"4000"}))


def test_report_html_is_the_same_report_self_contained(example):
    md, folder = example
    page = (folder / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>Ablation report: example</title>" in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == md.count("![") and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page
    assert page.count("<table>") == len(report_tables.tables(md))
    text = html_mod.unescape(re.sub(r"<[^>]+>", "", page))
    for line in md.splitlines():
        if line.startswith("- **dropout**:"):
            plain = re.sub(r"\*\*|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", line[2:])
            assert plain in text


def test_report_rebuilds_both_files_byte_for_byte(tmp_path):
    a = markdown.write(runs_from(EXAMPLE), "example", tmp_path / "a").parent
    b = markdown.write(runs_from(EXAMPLE), "example", tmp_path / "b").parent
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    markdown.write(runs_from(EXAMPLE), "example", a)  # over its own files
    assert all(p.read_bytes() == (b / p.name).read_bytes() for p in a.iterdir())


PROBE = """
<script>
window.addEventListener("load", function () {
  var d = document.documentElement, answer = document.getElementById("r-answer");
  var table = document.querySelector("table"), th = table.querySelector("thead th");
  var first = function () { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[0].textContent; }); };
  var before = first(); th.click(); var up = first(); th.click(); var down = first();
  var images = Array.prototype.slice.call(document.images);
  var out = {scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, height: window.innerHeight,
             answerTop: answer.getBoundingClientRect().top, tableBottom: table.getBoundingClientRect().bottom,
             images: images.length, loaded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
             fetched: performance.getEntriesByType("resource").map(function (e) { return e.name; }),
             before: before, up: up, down: down};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script>
"""


@pytest.mark.skipif(
    not CHROMIUM and not os.environ.get("CI"),
    reason="headless Chromium is not installed (apt-get install chromium); CI installs it",
)
def test_report_html_in_headless_chromium_offline(example):
    md, folder = example
    probe = folder / "probe.html"
    probe.write_text((folder / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(*OFFLINE, "--window-size=1280,800", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    seen = json.loads(html_mod.unescape(found.group(1)))
    assert seen["scrollWidth"] <= seen["clientWidth"], seen  # no horizontal scroll at 1280 px
    # the whole answer in the first screen
    assert 0 <= seen["answerTop"] and seen["tableBottom"] <= seen["height"], seen
    assert seen["images"] == md.count("![") and seen["loaded"] == seen["images"], seen
    assert seen["fetched"] == [], seen
    assert seen["before"] == ["baseline", "batchnorm", "dropout"]
    assert seen["up"] == sorted(seen["before"]) and seen["down"] == sorted(seen["before"], reverse=True)
    shot = folder / "shot.png"
    chromium(*OFFLINE, "--window-size=1280,800", f"--screenshot={shot}", (folder / "report.html").as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(shot.read_bytes()[16:20], "big") == 1280


def test_html_in_store_content_is_shown_as_text_in_report_html(tmp_path):
    """A run's error text is the user's (or a model's), not the report's: no markup of it runs."""
    runs = fake_runs()
    runs[-1].tags["harness.error"] = '<script>alert(1)</script><img src=x onerror="alert(2)"> <a id="g-t"></a>'
    markdown.write(runs, "fake", tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.count("<script>") == 1 and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<a id="r-answer"></a>' in page and '<a id="g-verdict"></a>' in page


def _sequential(variants: list[str], max_seeds: int) -> dict[str, str]:
    return {
        "harness.sequential": json.dumps(
            {"min_seeds": 3, "max_seeds": max_seeds, "first_seed": 1, "baseline": "baseline", "variants": variants}
        )
    }


def test_seeds_on_demand_answers_with_the_deciding_look_and_says_when_it_is_open(tmp_path):
    """Review of issue 25: a design still running is open, not inconclusive; a decided variant's Δ
    and seeds are those of the look that decided it, as the Seeds-on-demand table gives them."""
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


def test_store_text_cannot_split_a_table_or_plant_an_anchor_or_an_image(tmp_path):
    from dataclasses import replace

    runs = [
        replace(r, classes=tuple("a|b" if c == "cat" else c for c in r.classes)) if r.classes else r
        for r in fake_runs()
    ]
    runs[-1].tags["harness.error"] = 'boom | <a id="g-t"></a> ![x](report.md) <b>bold</b>'
    (tmp_path / "tuning").mkdir()
    markdown.write(fake_runs(), "fake", tmp_path / "first")
    (tmp_path / "tuning" / "history.png").write_bytes((tmp_path / "first" / "test_accuracy.png").read_bytes())
    (tmp_path / "tuning" / "dropout.md").write_text(
        "### Tuning `dropout`\n\n![history](tuning/history.png)\n\n*Its trials.*\n"
    )
    md = markdown.write(runs, "fake", tmp_path).read_text()
    assert_form(md)
    assert "| a\\|b |" in md and 'boom \\| &lt;a id="g-t"&gt;&lt;/a&gt;' in md
    page = (tmp_path / "report.html").read_text()
    assert page.count('id="g-t"') == 1 and "<b>bold</b>" not in page and "![x](report.md)" in page  # text, not an image
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == md.count("![") and all(s.startswith("data:image/png;base64,") for s in sources)


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
    """Issue 24, item 3: the binomial sd of the test accuracy beside the seed spread, and a note
    for a variant whose seeds spread no more than that."""
    md, _ = example
    for v, seeds in EXAMPLE.items():
        p = np.mean(list(seeds.values())) / 10_000
        assert (
            report_tables.row(md, "Accuracy", v)["test-set floor (sd)"] == f"{100 * np.sqrt(p * (1 - p) / 10_000):.2f}"
        )
    note = next(line for line in md.splitlines() if "within the test-set floor" in line)
    assert "`batchnorm` (seed sd 0.47, floor 0.48)" in note and "`baseline`" not in note and "`dropout`" not in note
