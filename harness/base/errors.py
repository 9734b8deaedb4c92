"""The one error type that means "the user asked for something we can't do": the CLI prints its
message on one line and exits with code 2, before any work starts."""


class UsageError(ValueError):
    """Bad input: a setting, a file or a request. The message names the field, the value and what is allowed."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, as KeyboardInterrupt is on SIGINT."""
