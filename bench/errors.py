"""The two error kinds of the harness.

``UsageError`` is bad input: the CLI prints its message as one line (what is wrong and the fix) and exits 2, no
traceback. ``Unavailable`` means a run or a metric cannot be computed on this machine (no GPU, no weights, no data):
the affected cells say ``unavailable (<why>)`` and the rest of the artefact goes on. ``RowFailed`` means a row's
own inputs are broken: its cells say ``failed (<why>)``, the rest goes on, and the command exits 3.
"""


class UsageError(Exception):
    """Bad input; the message is one line naming the problem and the fix."""


class Unavailable(Exception):
    """Cannot be computed here (missing GPU, weights or data); the message says why."""


class RowFailed(Exception):
    """This row's inputs cannot give a number (a checkpoint that does not match its model, out of memory at the
    smallest batch): its cells say ``failed (<why>)``, the rest of the table completes, the exit code says so."""
