"""Children the harness starts (`run --jobs-per-device K`, `tune --workers N`) stop when their
parent is gone: the parent names itself in HARNESS_PARENT_PID, and each child watches for being
re-parented (the parent died, even by SIGKILL) and then sends itself SIGTERM, which stops it as a
user's SIGTERM would: the run in progress is marked KILLED and its checkpoint is kept (or, if it has
not stopped GRACE_S later, it kills itself; the next command resumes from the checkpoint)."""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
import time

ENV = "HARNESS_PARENT_PID"


def child_env() -> dict[str, str]:
    """The environment entry a child needs to watch this process."""
    return {ENV: str(os.getpid())}


GRACE_S = 20.0  # how long a child may take to stop after its SIGTERM before it kills itself outright


def watch(every: float = 0.5, grace: float = GRACE_S) -> None:
    """In a child of the harness, SIGTERM this process once its parent is gone; elsewhere nothing.
    A child that has not stopped `grace` seconds later (its main thread stuck where Python cannot
    raise, e.g. waiting on a lock in C) prints its threads' stacks to stderr and SIGKILLs itself:
    a child never outlives its parent for long, and its last checkpoint is kept either way."""
    text = os.environ.pop(ENV, "")  # not inherited further: a grandchild has another parent
    if not text.isdigit():
        return
    parent = int(text)

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)  # a daemon thread: it ends with the process if the process stops in time
        faulthandler.dump_traceback(all_threads=True)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()
