"""Deterministic fault injection, for the fault-tolerance tests and for users who want to check
their own set-up: `HARNESS_FAULT="POINT:N:SIGNAL"` makes the process send SIGNAL (KILL, TERM or
INT) to itself the N-th time it passes POINT. Points: `step` (a training step), `checkpoint`
(half-way through writing a checkpoint), `checkpointed` (after a checkpoint, before the epoch's
metrics are logged), `logged` (after the epoch's metrics are logged), `round` (with seeds on
demand, after each replay of the rounds, before the next round trains), `recorded` (a fused
group's member is recorded FINISHED, before the next member is).

Unset, `point()` is one comparison.
"""

from __future__ import annotations

import os
import signal

POINTS = ("step", "checkpoint", "checkpointed", "logged", "round", "recorded")
SIGNALS = ("KILL", "TERM", "INT")
_SPEC = os.environ.get("HARNESS_FAULT", "")
_POINT, _AT, _SIGNAL = (_SPEC.split(":") + ["", "", ""])[:3] if _SPEC else ("", "0", "KILL")
_COUNT = {"n": 0}


def check() -> None:
    """A malformed HARNESS_FAULT is one line naming the variable, before any work."""
    from harness.base.errors import UsageError

    parts = _SPEC.split(":")
    if not _SPEC:
        return
    ok = (
        2 <= len(parts) <= 3
        and parts[0] in POINTS
        and parts[1].isdigit()
        and int(parts[1]) >= 1
        and (len(parts) == 2 or parts[2] in SIGNALS)
    )
    if not ok:
        raise UsageError(
            f"HARNESS_FAULT: {_SPEC!r} is not allowed; expected POINT:N[:SIGNAL] with POINT one of {', '.join(POINTS)}, "
            f"N >= 1 and SIGNAL one of {', '.join(SIGNALS)} (or unset it)"
        )


def missed() -> str:
    """A warning when this process passed the fault's point, but fewer than N times (so nothing was
    injected: `logged:99999` on a 2-epoch run), else ''. A process that never passes the point (the
    parent of --jobs-per-device or --workers processes) says nothing."""
    if not _SPEC or not 0 < _COUNT["n"] < int(_AT):
        return ""
    return (
        f"warning: HARNESS_FAULT={_SPEC}: no fault was injected; this process passed {_POINT!r} "
        f"{_COUNT['n']} time(s), fewer than {_AT}"
    )


def wants(point: str) -> bool:
    return _POINT == point


def point(name: str) -> None:
    if name != _POINT:
        return
    _COUNT["n"] += 1
    if _COUNT["n"] == int(_AT):
        os.kill(os.getpid(), getattr(signal, f"SIG{_SIGNAL or 'KILL'}"))
