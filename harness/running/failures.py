"""What a failed run says about its error: one line for the console, the report and the tag
`harness.error` (the error, and where it was raised in the user's own code: a component file or a
module of theirs, not the harness, torch or the standard library), and the whole traceback, logged
as the run's artifact `error.txt` and printed with `--debug` (HARNESS_DEBUG=1)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from harness.variants.plugins import is_users_file

TRACEBACK = "error.txt"


def debugging() -> bool:
    return os.environ.get("HARNESS_DEBUG", "") == "1"


def reason(e: BaseException) -> str:
    """`Type: message`, then `(file.py, line N, in function)` for the deepest frame of the user's own code."""
    text = f"{type(e).__name__}: {e}"
    frames = [
        f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<") and is_users_file(f.filename)
    ]
    if frames:
        f = frames[-1]
        text += f" ({Path(f.filename).name}, line {f.lineno}, in {f.name})"
    return text


def full(e: BaseException) -> str:
    return "".join(traceback.format_exception(e))
