"""`report.html`, the report's twin for a browser or an e-mail: the same markdown rendered by
markdown-it-py (CommonMark with GitHub's tables), every figure embedded as a data URI, inline
styles and a small inline script that sorts a table by the column header clicked. It loads
nothing from anywhere, so it opens offline and can be attached as one file. Raw HTML in the
markdown other than the report's anchors is shown as text, never run.

The same markdown and figures give the same bytes: nothing in it depends on the time or the machine.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2328;
       max-width: 1120px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.4em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; display: block; max-width: 100%; overflow-x: auto; margin: 0.6em 0 1em; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; vertical-align: top; }
th { background: #f6f8fa; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 0.7em; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 0.7em; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; height: auto; }
pre { white-space: pre-wrap; word-break: break-all; background: #f6f8fa; padding: 8px 12px; }
code { font-size: 0.9em; overflow-wrap: anywhere; }
blockquote { margin: 0.6em 0; padding: 0.2em 1em; border-left: 4px solid #d4a72c; background: #fff8c5; }
a { color: #0969da; }
"""

# Click a header to sort its table's rows; click again to reverse. Numbers sort as numbers
# (a leading +, − or -, and "<0.001" as 0.001), the rest as text; a link inside a header keeps
# its own click.
SCRIPT = """
(function () {
  function key(cell) {
    var text = cell.textContent.trim().replace(/\\u2212/g, "-").replace(/^</, "");
    var m = text.match(/^[+-]?\\d+(\\.\\d+)?/);
    return m ? [0, parseFloat(m[0]), text] : [1, 0, text.toLowerCase()];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) return a[0] - b[0];
    if (a[0] === 0 && a[1] !== b[1]) return a[1] - b[1];
    return a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0;
  }
  document.querySelectorAll("table").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, column) {
      th.addEventListener("click", function (event) {
        if (event.target.closest("a")) return;
        var down = th.getAttribute("aria-sort") === "ascending";
        heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", down ? "descending" : "ascending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          var c = compare(key(r.cells[column]), key(s.cells[column]));
          return down ? -c : c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


# The report writes raw HTML only as its own anchors, `<a id="..."></a>`, and escapes store text
# (harness/report/stats_section.text). Whatever other raw HTML reaches the page is shown as text,
# an anchor id only once, and an image only when it is a PNG of the report's own folder.
ANCHOR = re.compile(r'<a id="([a-z0-9-]+)">')
PNG = b"\x89PNG\r\n\x1a\n"


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def _figure(folder: Path, src: str) -> bytes | None:
    """The bytes of the PNG of the report's folder that `src` names, else None."""
    if not src or "\\" in src or ":" in src or src.startswith("/") or ".." in src.split("/"):
        return None
    try:
        payload = (folder / src).read_bytes() if (folder / src).is_file() else b""
    except OSError:
        return None
    return payload if payload[:8] == PNG else None


def _as_text(token, text: str) -> None:
    token.type, token.tag, token.content, token.children, token.attrs = "text", "", text, None, {}


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render(text: str, folder: Path) -> str:
    """The HTML page of the markdown `text`, whose figures lie in `folder`."""
    title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), "Ablation report")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{fragment(text, folder)}"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def fragment(text: str, folder: Path) -> str:
    """The page's body alone (no style or script that would reach beyond it): what a notebook shows
    inline, with the figures embedded, so it survives sharing the notebook without its folder."""
    md = _parser()
    tokens = md.parse(text)
    seen: set[str] = set()
    for token in tokens:
        if token.type == "html_block":
            _as_text(token, token.content)
        for child in token.children or ():
            if child.type == "image":
                figure = _figure(folder, str(child.attrGet("src") or ""))
                if figure is None:
                    _as_text(child, f"[image: {child.content}]")
                else:
                    child.attrSet("src", _data_uri(figure))
            elif child.type == "html_inline":
                anchor = ANCHOR.fullmatch(child.content)
                if child.content == "</a>" or (anchor and anchor.group(1) not in seen):
                    seen.update(anchor.groups() if anchor else ())
                else:
                    _as_text(child, child.content)
    return md.renderer.render(tokens, md.options, {})
