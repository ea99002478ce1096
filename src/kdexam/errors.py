"""User-facing errors.

Anything the user can fix (a missing file, an unknown column, a config typo) is
raised as :class:`KdexamError` with one plain sentence that names the input and the
fix. The CLI prints that sentence and exits with code 2; other exceptions are bugs
and keep their traceback, except an ``OSError`` on a path the system refuses
(:func:`path_refused`), which the user fixes as well.
"""

import errno


class KdexamError(Exception):
    """Bad input: the message is one sentence naming the input and the fix."""

    exit_code = 2


class InputError(KdexamError, ValueError):
    """Bad input to a predictor (an empty text, a pair without its second text, …): a
    :class:`KdexamError` (exit code 2 in the CLI) that is also a ``ValueError``, as the standalone
    serving script in an export folder raises it, so one ``except ValueError`` serves both."""


class UnknownArguments(TypeError):
    """Keyword arguments a Python API call does not take: a ``TypeError``, as Python raises for a
    function's unknown keyword, that also carries the ``names`` (the exam names the first in its sentence)."""

    def __init__(self, names: list[str], hint: str = ""):
        self.names = list(names)
        super().__init__(f"unknown argument(s): {', '.join(self.names)}{hint}")


def path_refused(e: OSError) -> str | None:
    """The sentence for an ``OSError`` on a path the system refuses (permission, a missing or read-only
    folder, a full disk) that no earlier check caught; ``None`` for any other (a bug: its traceback stays)."""
    if not e.filename or not (isinstance(e, (PermissionError, FileNotFoundError, NotADirectoryError))
                              or e.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT)):
        return None
    return (f"Cannot use '{e.filename}' ({e.strerror or e}); check the path, its permissions and the free space, "
            "or point the command elsewhere.")


def interrupted(command: str) -> str:
    """What the CLI says on Ctrl-C: how to continue, for the commands that can."""
    if command in ("teacher", "distill"):
        return "interrupted; the same command with --resume continues from the last checkpoint."
    if command == "exam":
        return "interrupted; the same command again continues (finished cells are kept)."
    return "interrupted"
