"""The error types the command line turns into one line: `UsageError` ("the user asked for
something we can't do": exit 2, before any work starts), `StoreError` (the store stopped taking
writes: exit 1, what it holds is safe) and `Terminated` (SIGTERM)."""


class UsageError(ValueError):
    """Bad input: a setting, a file or a request. The message names the field, the value and what is allowed."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, as KeyboardInterrupt is on SIGINT."""


class StoreError(RuntimeError):
    """The store stopped taking writes (its disk is full or failing, it became read-only); the runs it already holds are safe."""
