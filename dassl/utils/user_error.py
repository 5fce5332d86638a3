"""Errors in what the user asked for, as opposed to bugs.

Their message names the problem and the fix, so a command line prints it as one block, without
a traceback (``train.py --traceback`` shows it). Each concrete error keeps its builtin base too
(``ValueError``, ``FileNotFoundError``, ...), so code that catches those still does.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the command, config, data or weights that the message says how to fix."""
