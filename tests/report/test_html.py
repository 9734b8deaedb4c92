"""report.html (harness/report/html.py) beside report.md (harness/report/markdown.py): the same
report, self-contained (every image inlined, nothing linked), both files rebuilt byte for byte, read
offline in headless Chromium (no horizontal scroll at 1280 px, the answer in the first screen, every
image loaded, nothing fetched, the tables sortable), and the store's text (error tags, class names)
shown as text: no markup, anchor, image or table cell comes from it."""

from __future__ import annotations

import html as html_mod
import json
import os
import re

import pytest

from harness.report import markdown
from tests import report_tables
from tests.chromium import CHROMIUM, OFFLINE, chromium
from tests.helpers import EXAMPLE, assert_form, fake_runs, runs_from


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
