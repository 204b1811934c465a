"""Exception types that map to the CLI's exit codes.

`InputError` is the user's to fix (bad data, bad option, missing file): the CLI prints its one-line message and
exits with 2. `VaexprsRuntimeError` is a failure while doing valid work: exit 1.
"""

from __future__ import annotations


class VaexprsError(Exception):
    """Base of every error vaexprs raises on purpose."""

    exit_code = 1


class InputError(VaexprsError, ValueError):
    """Bad input or usage: the message names the problem; the CLI exits with 2."""

    exit_code = 2


class VaexprsRuntimeError(VaexprsError, RuntimeError):
    """Valid input, but the work failed (e.g. an exporter or runtime error); the CLI exits with 1."""

    exit_code = 1
