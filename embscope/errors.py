"""The one error type embscope raises, and the exit codes the CLI maps errors to."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


class EmbscopeError(Exception):
    """A problem the user can act on. Its message is printed as one line, without traceback."""

    def __init__(self, message: str, *, status: ExitStatus = ExitStatus.ERROR):
        super().__init__(message)
        self.status = status


class UsageError(EmbscopeError):
    """Bad arguments: exit status 2."""

    def __init__(self, message: str):
        super().__init__(message, status=ExitStatus.USAGE)


class ScoreOverflowError(EmbscopeError):
    """Dot or euclidean scores of vectors this long would overflow float32 (and silently drop
    out of a ranking)."""

    def __init__(self, metric: str, longest: float):
        super().__init__(f"metric '{metric}': vectors this long (norms up to {longest:.3g}) overflow"
                         " float32 scores; use the cosine metric")
        self.metric, self.longest = metric, longest


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name."""
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def missing_extra(package: str, extra: str, purpose: str) -> EmbscopeError:
    """The error for an optional dependency that is not installed, with the install hint."""
    return EmbscopeError(
        f"{purpose} needs {package}, which is not installed: pip install 'embscope[{extra}]'"
    )
