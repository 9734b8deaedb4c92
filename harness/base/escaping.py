"""Text from outside the harness (names and tags read back from the store, class names from the
data, error messages, hypotheses) made inert for the format it lands in, one function each:
`markdown` (prose and table cells), `code` (a markdown code span), `latex`, `html` and `terminal`.
Whatever a string holds (backticks, `<img onerror=...>`, `[x](https://...)`, `$\\bogus$`, escape
sequences, U+2028), it is shown as its characters and never becomes markup, a link, math or a
terminal command (tests/report/test_report.py::test_each_format_shows_hostile_text_as_its_characters)."""

from __future__ import annotations

import html as _html
import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 (but tab and newline), DEL and C1
# what could start live markup: a code span, a link or an image, a table cell's end, math (GitHub's $)
_MARKDOWN = re.compile(r"([\\`\[\]|$])")
_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def visible(value: object) -> str:
    """`value` as one line: control characters as their escapes (`\\x1b`), runs of whitespace
    (newlines, U+2028 included) as one space."""
    s = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))
    return " ".join(s.split())


def markdown(value: object) -> str:
    """Text in markdown prose or a table cell: one line, markup characters escaped, `<`, `>` and `&`
    as entities (GitHub and report.html both show the characters)."""
    s = _MARKDOWN.sub(r"\\\1", visible(value)).replace("://", "\\://")  # and no bare address GitHub would link
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(value: object) -> str:
    """`value` as a markdown code span: fenced by one backtick more than its longest run of
    backticks (CommonMark), so nothing in it closes the span early; inside, nothing is markup."""
    s = visible(value) or " "
    fence = "`" * (max((len(run) for run in re.findall("`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def latex(value: object) -> str:
    """`value` as LaTeX prints it literally (underscores, percent signs, braces ...)."""
    return "".join(_LATEX.get(ch, ch) for ch in visible(value))


def html(value: object) -> str:
    """`value` as HTML text or an attribute value."""
    return _html.escape(visible(value), quote=True)


def terminal(value: object) -> str:
    """`value` for a terminal: its lines kept, control characters (escape sequences, carriage
    returns, bells) shown as their escapes instead of acting on the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))
