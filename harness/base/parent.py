"""Children the harness starts (`run --jobs-per-device K`, `tune --workers N`) stop when their
parent is gone: the parent names itself in HARNESS_PARENT_PID, and each child watches for being
re-parented (the parent died, even by SIGKILL) and then sends itself SIGTERM, which stops it as a
user's SIGTERM would: the run in progress is marked KILLED and its checkpoint is kept."""
from __future__ import annotations

import os
import signal
import threading
import time

ENV = "HARNESS_PARENT_PID"


def child_env() -> dict[str, str]:
    """The environment entry a child needs to watch this process."""
    return {ENV: str(os.getpid())}


def watch(every: float = 0.5) -> None:
    """In a child of the harness, SIGTERM this process once its parent is gone; elsewhere nothing."""
    text = os.environ.pop(ENV, "")  # not inherited further: a grandchild has another parent
    if not text.isdigit():
        return
    parent = int(text)

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()
