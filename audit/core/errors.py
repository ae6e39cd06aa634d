"""Errors that mean "the user asked for something we cannot do" (exit code 2).

Everything raised as :class:`UserError` is reported by the CLI as a single line
(``error: <message>``) and exit status 2, never as a traceback. Library code raises
it for bad input (a wrong shape, an unknown label, a corrupt file) so that callers
can catch one type; the message must name the file or option and the problem.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line, exit 2."""

    exit_code = 2

    def __init__(self, message: str):
        # Keep it to one line: the CLI prints it verbatim.
        super().__init__(" ".join(str(message).split()))


class NotAvailableError(UserError):
    """A capability that is planned but not built yet (or cannot run here).

    Reported as ``not available yet: ...`` with a non-zero exit, never a fake result.
    """

    exit_code = 3
