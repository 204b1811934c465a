"""Exception types, the exit codes they map to, and the one place that turns an error into a message.

`InputError` is the user's to fix (bad data, bad option, missing file): exit 2. `OptionError` is an InputError
about one named option; it is worded with the Python name (`latent_dim must be >= 1`) and the CLI rewrites it
with the flag (`--latent-dim must be >= 1`). `VaexprsRuntimeError` is a failure while doing valid work: exit 1.
Interrupts exit 130 (SIGINT) and 143 (SIGTERM), as shells do.
"""

from __future__ import annotations

from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def examples(names: list[str], limit: int = 5) -> str:
    """The first few names and how many there are: a message stays one readable line on wide data."""
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class VaexprsError(Exception):
    """Base of every error vaexprs raises on purpose."""

    exit_code = EXIT_FAILURE


class InputError(VaexprsError, ValueError):
    """Bad input or usage: the message names the problem; the CLI exits with 2."""

    exit_code = EXIT_USAGE


class OptionError(InputError):
    """A bad value for one named option; `message(flag_of)` words it for the surface the user is on."""

    def __init__(self, option: str, detail: str, refs: tuple[str, ...] = ()) -> None:
        self.option = option
        self.detail = detail  # may name the options in `refs` as {name}: worded like the option itself
        # Only declared names are placeholders: the detail often quotes user text (a path, a label), whose own
        # braces must come out as typed ('out_{date}.csv', not 'out_--date.csv').
        self.refs = refs
        super().__init__(self.message())

    def message(self, flag_of: Callable[[str], str] | None = None) -> str:
        return f"{flag_of(self.option) if flag_of else self.option} {self.worded_detail(flag_of)}"

    def worded_detail(self, flag_of: Callable[[str], str] | None = None) -> str:
        """The detail with the options it names (`refs`) worded by `flag_of` (as they are without it)."""
        detail = self.detail
        for ref in self.refs:
            detail = detail.replace("{" + ref + "}", flag_of(ref) if flag_of else ref)
        return detail


class VaexprsRuntimeError(VaexprsError, RuntimeError):
    """Valid input, but the work failed (e.g. an exporter or runtime error); the CLI exits with 1."""

    exit_code = EXIT_FAILURE


class Terminated(BaseException):
    """SIGTERM/SIGHUP turned into an exception, so `finally` blocks and run scopes clean up as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"terminated by signal {signum}")


_RECEIVED: list[int] = []  # signals the CLI's handlers have seen (SIGINT, SIGTERM, SIGHUP), oldest first


def interrupt(signum: int) -> BaseException:
    """The exception a signal becomes: KeyboardInterrupt for SIGINT, Terminated for the others."""
    import signal

    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def note_signal(signum: int) -> None:
    """Remember a signal, so that a long loop stops at its next block even when the exception the handler
    raised was swallowed (an exception raised while a C extension finalises an object is only printed)."""
    _RECEIVED.append(signum)


def forget_signals() -> None:
    """A new command starts with no pending signal (the CLI's main may run more than once in a process)."""
    _RECEIVED.clear()


def pending_signal() -> int | None:
    """The first signal a handler noted since the command started, or None."""
    return _RECEIVED[0] if _RECEIVED else None


def check_interrupted() -> None:
    """Raise the pending signal's exception, if a handler noted one: call it between units of work."""
    if (signum := pending_signal()) is not None:
        raise interrupt(signum)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's `.message` when it has one), or its type name."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
