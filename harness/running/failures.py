"""What a failed run says about its error: one line for the console, the report and the tag
`harness.error` (the error, and where it was raised in the user's own code: a component file or a
module of theirs, not the harness, torch or the standard library), and the whole traceback, logged
as the run's artifact `error.txt` and printed with `--debug` (HARNESS_DEBUG=1)."""

from __future__ import annotations

import os
import sysconfig
import traceback
from pathlib import Path

TRACEBACK = "error.txt"
_NOT_THEIRS = tuple(  # the installed packages, the standard library and the harness itself
    str(Path(p).resolve()) for p in {*sysconfig.get_paths().values(), str(Path(__file__).resolve().parents[1])}
)


def debugging() -> bool:
    return os.environ.get("HARNESS_DEBUG", "") == "1"


def reason(e: BaseException) -> str:
    """`Type: message`, then `(file.py, line N, in function)` for the deepest frame of the user's own code."""
    text = f"{type(e).__name__}: {e}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if _theirs(f.filename)]
    if frames:
        f = frames[-1]
        text += f" ({Path(f.filename).name}, line {f.lineno}, in {f.name})"
    return text


def full(e: BaseException) -> str:
    return "".join(traceback.format_exception(e))


def _theirs(filename: str) -> bool:
    if filename.startswith("<"):
        return False
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        return False
    return not resolved.startswith(_NOT_THEIRS)
