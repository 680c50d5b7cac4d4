"""Errors that reach a user. The CLI prints their message as one line (or a line plus a log tail) and exits 2."""


class BraidError(RuntimeError):
    """A failure the user can act on; the message says what went wrong and where."""
