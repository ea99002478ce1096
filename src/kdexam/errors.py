"""User-facing errors.

Anything the user can fix (a missing file, an unknown column, a config typo) is
raised as :class:`KdexamError` with one plain sentence that names the input and the
fix. The CLI prints that sentence and exits with code 2; other exceptions are bugs
and keep their traceback.
"""


class KdexamError(Exception):
    """Bad input: the message is one sentence naming the input and the fix."""

    exit_code = 2
