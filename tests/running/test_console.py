"""The console: the ETA from measured epoch times, and the overall progress line on a real
pseudo-terminal (tqdm), against plain lines when piped (tests/cli/test_cli.py)."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

import pytest

from harness.running.console import Console, Plan, duration
from tests.helpers import ROOT, fresh_store


def test_the_eta_counts_measured_epochs_left_and_skipped_runs_as_done():
    plan = Plan(runs=4, epochs_per_run=10)
    assert plan.eta() is None and plan.eta_text() == "ETA --"
    console = Console(io.StringIO())
    console.plan_runs(4, 10)
    console.run_done("skip baseline seed 1", skipped=True)  # finished earlier: done at once, no time
    console.start_run("baseline seed 2", 1000)
    console.epoch_done(1, 10, 2.0)
    console.epoch_done(2, 10, 4.0)  # 3 s an epoch so far; 8 epochs of this run and 2 runs of 10 left
    assert console.plan.eta() == (8 + 20) * 3.0 and console.rate == "250 img/s"
    for epoch in range(3, 11):
        console.epoch_done(epoch, 10, 3.0)
    assert console.plan.eta() == 20 * 3.0  # testing and recording after the last epoch: the run is not counted again
    console.run_done("finished baseline seed 2")
    console.start_run("baseline seed 3", 1000, epochs_done=6)  # resumed after 6 epochs
    assert console.plan.epochs_left_in_run == 4 and console.plan.eta() == (4 + 10) * 3.0
    assert [duration(s) for s in (4, 185, 7440)] == ["4s", "3m05s", "2h04m"]


# slow group: a real run under a pseudo-terminal (about 15 s)
@pytest.mark.slow
def test_a_terminal_shows_one_overall_line_with_the_eta(tmp_path, data_dir):
    """The harness under a real pseudo-terminal: tqdm's line with runs done, variant and seed, epoch, img/s and ETA."""
    import fcntl
    import struct
    import termios

    fresh_store(tmp_path)
    master, slave = pty.openpty()
    # 120 columns: the line is cut at the terminal's width, and at 80 a 4-digit img/s (a faster or
    # less loaded machine) pushes "ETA" past the edge.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    # COLUMNS and LINES would override the terminal's own size (shutil.get_terminal_size reads them
    # first); CI sets COLUMNS=80.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(ROOT), HARNESS_DATA_DIR=str(data_dir), TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--variants", "baseline,dropout", "--seeds", "2", "--epochs", "2"],
        cwd=tmp_path,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    out = b"".join(chunks).decode("utf-8", "replace")
    assert re.search(
        r"\r1/4 runs \|[^\r\n]*\| baseline seed 2022 \| epoch \d/2[^\r\n]*\| [\d,]+ img/s \| ETA \d+s", out
    ), out[-3000:]
    assert "finished dropout seed 2022 in" in out and "[4/4 runs; ETA 0s]" in out
    assert "4 of 4 runs finished" in out


def test_a_table_shows_control_characters_as_escapes_and_each_cell_on_one_line():
    """`list` never prints a hypothesis's terminal escape sequences raw (colouring or clearing the terminal)."""
    from harness.running.console import table

    shown = table(["component", "hypothesis"], [["evil", "\x1b[2J\x1b[31mred\r\nnext line"]])
    assert "\x1b" not in shown and "\r" not in shown and "\\x1b[2J\\x1b[31mred\\r next line" in shown
    assert len(shown.splitlines()) == 3


def test_the_console_writes_to_standard_output_as_it_is_when_made():
    """Not as it was when harness was imported: a caller's redirection (a notebook's, or
    contextlib.redirect_stdout) applies to every console made inside it."""
    import contextlib
    import io

    from harness.running.console import Console

    first, second = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(first):
        assert Console(mode="plain").stream is first
    with contextlib.redirect_stdout(second):
        assert Console(mode="plain").stream is second
