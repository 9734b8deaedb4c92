"""The report's tables as a GitHub-flavoured markdown renderer sees them: markdown-it-py (CommonMark
with GFM tables) finds each table and the heading above it; the cells are split from the table's
source lines as GFM splits them (on every `|` not escaped), so a row whose count differs from its
header's shows up here even though a renderer would pad or cut it silently."""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
TAG = re.compile(r"<[^>]+>")


@dataclass
class Table:
    heading: str  # the text of the nearest heading above the table
    header: list[str]  # the header cells, links reduced to their labels
    rows: list[list[str]]  # the body rows' cells as written

    def row(self, first: str) -> dict[str, str]:
        """The body row whose first cell is `first`, keyed by the header cells."""
        found = next(r for r in self.rows if r[0] == first)
        assert len(found) == len(self.header), (self.header, found)
        return dict(zip(self.header, found))


def cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)]


def tables(md: str) -> list[Table]:
    lines, heading, found = md.splitlines(), "", []
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            heading = TAG.sub("", tokens[i + 1].content).strip()
        elif token.type == "table_open":
            start, end = token.map
            source = [cells(line) for line in lines[start:end]]
            found.append(Table(heading, [LINK.sub(r"\1", c) for c in source[0]], source[2:]))
    return found


def row(md: str, heading: str, first: str) -> dict[str, str]:
    """The row starting with `first` of the first table, under a heading that starts with `heading`, that has one."""
    for t in tables(md):
        if t.heading.startswith(heading) and any(r[0] == first for r in t.rows):
            return t.row(first)
    raise AssertionError(f"no table under a heading {heading!r} has a row {first!r}")
