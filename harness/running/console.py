"""What the user sees while runs go: the tutorial's per-epoch lines, one line per finished run with
the estimated time to the end, and the final summary table.

On a terminal, one overall line stays under the tutorial's lines (tqdm draws it): runs done of
the total, the current variant and seed, its epoch and step, images per second and the ETA of the
whole command. Piped (CI, logs), or with HARNESS_CONSOLE=plain, the output is plain lines only: the tutorial's final line of each
phase, and the ETA at the end of each run's line. From the Python API (HARNESS_CONSOLE=notebook) the
overall line is a tqdm.auto bar (a widget in Jupyter) and the per-epoch lines are left out.

The ETA uses measured epoch times: the mean seconds of the epochs this command trained, times the
epochs left (those of the current run and of every run not yet started); a run skipped as
finished counts as done at once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from harness.base import credentials, escaping

if TYPE_CHECKING:  # the console is imported by `list`, which must not import torch
    from harness.training.engine import Progress


def duration(seconds: float) -> str:
    """4s, 3m05s, 2h04m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class Plan:
    """How far the command is: runs and epochs planned and done, and the measured epoch times."""

    runs: int = 0  # planned (grows with each round of seeds on demand)
    runs_done: int = 0
    epochs_per_run: int = 0
    running: bool = False  # a run is in progress (training, or testing and recording after its last epoch)
    epochs_left_in_run: int = 0  # of the run in progress
    seconds: float = 0.0  # measured: total wall time of the epochs trained so far
    epochs_measured: int = 0
    images: int = 0  # training + validation images of an epoch

    def eta(self) -> float | None:
        if not self.epochs_measured:
            return None
        waiting = max(0, self.runs - self.runs_done - (1 if self.running else 0))
        return (self.epochs_left_in_run + waiting * self.epochs_per_run) * self.seconds / self.epochs_measured

    def eta_text(self) -> str:
        eta = self.eta()
        return "ETA --" if eta is None else f"ETA {duration(eta)}"


class Console:
    """Prints the tutorial's lines, the run lines, and on a terminal the overall progress line."""

    def __init__(self, stream: TextIO | None = None, mode: str | None = None) -> None:
        """`stream`: standard output as it is when the console is made (not when this module was
        imported, so a caller's redirection applies). `mode`: "notebook" (the Python API), "plain"
        or None (live on a terminal); $HARNESS_CONSOLE, when set, wins."""
        stream = stream if stream is not None else sys.stdout
        self.stream = stream
        mode = os.environ.get("HARNESS_CONSOLE") or mode
        self.notebook = mode == "notebook"
        # the processes of --jobs-per-device print plain lines
        self.live = self.notebook or (stream.isatty() and mode != "plain")
        self.plan = Plan()
        self.current = ""  # "variant seed N" of the run in progress
        self.rate = ""  # images per second of the last epoch
        self._bar = None

    def _write(self, text: str) -> None:
        """A closed pipe (`| head`) silences the console; it never stops a run. Passwords in
        addresses are masked (harness/base/credentials.py)."""
        text = escaping.terminal(credentials.mask(text))
        try:
            if self._bar is not None:
                self._bar.clear()
                self.stream.write(text)
                self.stream.flush()
                self._bar.refresh()
            else:
                self.stream.write(text)
                self.stream.flush()
        except BrokenPipeError:
            self.stream, self.live, self._bar = open(os.devnull, "w"), False, None

    @property
    def progress_every(self) -> int:
        return 10 if self.live else 0

    def plan_runs(self, runs: int, epochs: int) -> None:
        """`runs` more (variant, seed) runs of `epochs` epochs are coming."""
        self.plan.runs += runs
        self.plan.epochs_per_run = epochs
        self._draw()

    def header(self, text: str) -> None:
        self._write(f"== {text}\n")

    def start_run(self, name: str, images: int, epochs_done: int = 0) -> None:
        """A run starts (or resumes after `epochs_done` epochs); an epoch reads `images` images."""
        self.current, self.plan.images, self.plan.running = name, images, True
        self.plan.epochs_left_in_run = self.plan.epochs_per_run - epochs_done
        self._draw()

    def progress(self, p: Progress) -> None:
        """The tutorial's line at the end of each phase; on a terminal the overall line follows every step."""
        if p.done and not self.notebook:
            label = "TRAIN" if p.phase == "train" else "VAL  "
            self._write(
                f"{label} EPOCH[{p.epoch:03d}/{p.epochs:03d}] ITR [{p.step:04d}/{p.steps:04d}] LOSS:{p.loss:.5f} ACC:{p.acc:.6f}\n"
            )
        self._draw(f"epoch {p.epoch}/{p.epochs} {p.phase} {p.step}/{p.steps}")

    def epoch_done(self, epoch: int, epochs: int, seconds: float) -> None:
        """An epoch of the current run ended after `seconds` (train and validation)."""
        self.plan.seconds += seconds
        self.plan.epochs_measured += 1
        self.plan.epochs_left_in_run = epochs - epoch
        self.rate = f"{self.plan.images / seconds:,.0f} img/s" if seconds > 0 else ""
        self._draw(f"epoch {epoch}/{epochs}")

    def run_done(self, text: str, skipped: bool = False) -> None:
        """A run ended (trained, failed or skipped as finished): its line, ending with the ETA."""
        self.plan.runs_done += 1
        self.plan.epochs_left_in_run, self.plan.running = 0, False
        self._write(
            f"{text} [{self.plan.runs_done}/{self.plan.runs} runs; {self.plan.eta_text()}]\n"
            if not skipped
            else f"{text}\n"
        )
        self._draw()

    def line(self, text: str) -> None:
        self._write(text + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _draw(self, where: str = "") -> None:
        if not self.live or not self.plan.runs:
            return
        if self._bar is None and self.notebook:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.plan.runs, unit="run", leave=True, bar_format="{n_fmt}/{total_fmt} runs |{bar:16}| {desc}"
            )
        if self._bar is None:
            import shutil

            from tqdm import tqdm

            # a pseudo-terminal may report 0 × 0: tqdm then draws nothing
            size = shutil.get_terminal_size(fallback=(100, 24))
            self._bar = tqdm(
                total=self.plan.runs,
                file=self.stream,
                unit="run",
                ncols=size.columns or 100,
                nrows=size.lines or 24,
                leave=False,
                bar_format="{n_fmt}/{total_fmt} runs |{bar:16}| {desc}",
            )
        self._bar.total = self.plan.runs
        self._bar.n = self.plan.runs_done
        parts = [self.current if self.plan.running else "", where, self.rate, self.plan.eta_text()]
        self._bar.set_description_str(" | ".join(p for p in parts if p), refresh=False)
        self._bar.refresh()


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain aligned text table; each cell one line, control characters shown as their escapes."""
    rows = [[escaping.visible(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in out)
