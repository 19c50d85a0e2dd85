"""The base of every error a user can cause (bad options, files, models, data) and can fix from the message alone.

The command line prints these as one `Error: ...` line. Anything else is a bug or an environment failure: it is
shown with its type and a hint to rerun with -v, which prints the traceback. No imports: every module may use it.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave; the message names the problem in one line."""


def first_line(e: BaseException) -> str:
    """The first non-blank line of an exception's message (libraries raise multi-line ones), or its type's name."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
