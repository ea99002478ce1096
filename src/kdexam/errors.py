"""User-facing errors.

Anything the user can fix (a missing file, an unknown column, a config typo) is
raised as :class:`KdexamError` with one plain sentence that names the input and the
fix. The CLI prints that sentence and exits with code 2; other exceptions are bugs
and keep their traceback.
"""


class KdexamError(Exception):
    """Bad input: the message is one sentence naming the input and the fix."""

    exit_code = 2


class InputError(KdexamError, ValueError):
    """Bad input to a predictor (an empty text, a pair without its second text, …): a
    :class:`KdexamError` (exit code 2 in the CLI) that is also a ``ValueError``, as the standalone
    serving script in an export folder raises it, so one ``except ValueError`` serves both."""
