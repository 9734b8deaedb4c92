"""Claims with leases, so several `run` commands on one experiment train each run key once.

A claim is a row in a small SQLite database (WAL mode, busy timeout) beside the checkpoints. Its
holder renews the lease from a background thread every few seconds; a holder that dies stops
renewing and loses the claim when the lease runs out (30 s by default), or at once when it was a
process on this machine that no longer exists. A live holder renews long before the lease runs
out, and checks that it still holds the claim before it writes anything.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from harness.base import files

LEASE_S = 30.0


def process_alive(host: str, pid: str) -> bool:
    """False when `pid` is a process on this machine that no longer exists (its claims need not
    wait for their lease to run out); True otherwise, including for processes on other machines."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _alive(owner: str) -> bool:
    """Whether a claim's holder (`host:pid:token`) may still be running."""
    host, pid, _ = owner.split(":", 2)
    return process_alive(host, pid)


FILENAME = "claims.sqlite"  # in the experiment's checkpoint folder


def check_file(path: Path) -> None:
    """An existing claims file must be a readable SQLite database; else one line naming it."""
    from harness.base.errors import UsageError

    if not path.exists():
        return
    hint = "delete it when no other runner of this experiment is running (it holds only leases)"
    if not path.is_file():
        raise UsageError(f"checkpoint_dir: {str(path)!r} is not a file; {hint}")
    try:
        with contextlib.closing(sqlite3.connect(files.sqlite_uri(path.resolve(), "ro"), uri=True, timeout=30)) as db:
            db.execute("select name from sqlite_master").fetchall()
    except sqlite3.DatabaseError as e:
        raise UsageError(f"checkpoint_dir: {str(path)!r} is not a readable claims database ({e}); {hint}") from None


class Claims:
    def __init__(self, path: Path, lease_s: float = LEASE_S) -> None:
        self.path = path
        self.lease_s = lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._held: set[str] = set()
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "create table if not exists claims (key text primary key, owner text not null, expires real not null)"
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_forever, name="claims-lease", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def _connect(self):
        fresh = not self.path.exists()  # first use, or the folder was deleted from under a running experiment
        if fresh:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("pragma journal_mode=wal")
            db.execute("pragma busy_timeout=30000")
            if fresh:  # recreate it with the claims this runner holds, so it keeps them
                db.execute(
                    "create table if not exists claims (key text primary key, owner text not null, expires real not null)"
                )
                with self._lock:
                    held = list(self._held)
                db.executemany(
                    "insert or ignore into claims values (?, ?, ?)",
                    [(k, self.owner, time.time() + self.lease_s) for k in held],
                )
            yield db
        finally:
            db.close()

    def acquire(self, key: str) -> bool:
        """Take the claim on `key` if nobody holds it or its holder's lease has run out."""
        with self._connect() as db:
            db.execute("begin immediate")
            row = db.execute("select owner, expires from claims where key = ?", (key,)).fetchone()
            now = time.time()
            if row and row[0] != self.owner and row[1] > now and _alive(row[0]):
                db.execute("rollback")
                return False
            db.execute(
                "insert or replace into claims (key, owner, expires) values (?, ?, ?)",
                (key, self.owner, now + self.lease_s),
            )
            db.execute("commit")
        with self._lock:
            self._held.add(key)
        return True

    def holds(self, key: str) -> bool:
        with self._connect() as db:
            row = db.execute("select owner, expires from claims where key = ?", (key,)).fetchone()
        return bool(row) and row[0] == self.owner

    def release(self, key: str) -> None:
        with self._lock:
            self._held.discard(key)
        with self._connect() as db:
            db.execute("delete from claims where key = ? and owner = ?", (key, self.owner))

    def _renew_forever(self) -> None:
        while not self._stop.wait(self.lease_s / 6):
            with self._lock:
                keys = list(self._held)
            if not keys:
                continue
            try:
                with self._connect() as db:
                    expires = time.time() + self.lease_s
                    db.executemany(
                        "update claims set expires = ? where key = ? and owner = ?",
                        [(expires, k, self.owner) for k in keys],
                    )
            # OSError: its folder went (a deleted working directory); the runner says so
            except (
                sqlite3.Error,
                OSError,
            ):
                pass  # the next beat tries again; the lease is six beats long

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            keys = list(self._held)
        for key in keys:
            self.release(key)
