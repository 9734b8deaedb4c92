"""The error types the command line turns into one line: `UsageError` ("the user asked for
something we can't do": exit 2, before any work starts), `StoreError` (the store stopped taking
writes: exit 1, what it holds is safe) and `Terminated` (SIGTERM); `one_of`, the check of a value
against the `Literal` type that declares what is allowed."""

from typing import Any, get_args

from harness.base.credentials import mask


class UsageError(ValueError):
    """Bad input: a setting, a file or a request. The message names the field, the value and what is
    allowed; a password in an address it quotes is masked (harness/base/credentials.py)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(mask(str(message)))


def one_of(where: str, value: Any, kind: Any) -> Any:
    """`value` if it is one of the values of `kind` (a `Literal[...]`); else a UsageError that names them."""
    allowed = get_args(kind)
    if isinstance(value, bool) or value not in allowed:
        raise UsageError(f"{where}: {value!r} is not allowed; expected one of {', '.join(map(str, allowed))}")
    return value


def unknown_component(name: str, valid: list[str]) -> str:
    """What is wrong with a component name nothing registers, and what is allowed (with the closest name)."""
    import difflib

    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown component {name!r}{hint}; components: {', '.join(valid)} (join them with '+', e.g. dropout+batchnorm)"
    )


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, as KeyboardInterrupt is on SIGINT."""


class StoreError(RuntimeError):
    """The store stopped taking writes (its disk is full or failing, it became read-only); the runs it already holds are safe."""

    def __init__(self, message: object = "") -> None:
        super().__init__(mask(str(message)))
