"""The two kinds of failure a user can cause, and how the command line reports them.

A `DataError` means an input file is wrong (missing, truncated, unsorted, mismatched); the
command line prints its message on one line and exits with code 1. A `UsageError` means the
options are wrong; exit code 2. Every message names the file or option and says how to fix it.
"""


class PlasmacountError(Exception):
    """Base class of errors whose message is meant for the user."""

    exit_code = 1


class DataError(PlasmacountError):
    """An input file cannot be used as it is."""

    exit_code = 1


class UsageError(PlasmacountError):
    """The command line asks for something impossible or contradictory."""

    exit_code = 2
