"""What the user sees while runs go: the tutorial's per-epoch lines and the final summary table."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the console is imported by `list`, which must not import torch
    from harness.engine import Progress


class Console:
    """Prints the tutorial's lines. On a terminal the current line is rewritten in place while a
    phase runs; otherwise only each phase's final line is printed."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def _write(self, text: str) -> None:
        """A closed pipe (`| head`) silences the console; it never stops a run."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            self.stream = open(os.devnull, "w")

    @property
    def progress_every(self) -> int:
        return 10 if self.live else 0

    def header(self, text: str) -> None:
        self._write(f"== {text}\n")

    def progress(self, p: Progress) -> None:
        label = "TRAIN" if p.phase == "train" else "VAL  "
        line = f"{label} EPOCH[{p.epoch:03d}/{p.epochs:03d}] ITR [{p.step:04d}/{p.steps:04d}] LOSS:{p.loss:.5f} ACC:{p.acc:.6f}"
        if p.done:
            self._write(("\r" if self.live else "") + line + "\n")
        elif self.live:
            self._write("\r" + line)

    def line(self, text: str) -> None:
        self._write(text + "\n")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in out)
