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


class ArgumentError(EmbscopeError):
    """An error about one argument of `embscope.load` (`argument`: wte_key, wpe_key, step,
    tokenizer). Its message names the argument as the API does; `worded(name)` says the same
    with another name for it (the CLI's option)."""

    argument: str

    def __init__(self, api_name: str, *, status: ExitStatus = ExitStatus.ERROR):
        super().__init__(self.worded(api_name), status=status)

    def worded(self, name: str) -> str:
        raise NotImplementedError


class NoTokenEmbeddingError(ArgumentError):
    """No tensor name ends as a token embedding does, and `wte_key` named none."""

    argument = "wte_key"

    def __init__(self, looked_for: tuple[str, ...]):
        self.looked_for = looked_for
        super().__init__("wte_key=")

    def worded(self, name: str) -> str:
        return f"no token embedding tensor found (looked for {', '.join(self.looked_for)}); name it with {name}"


class NoSuchTensorError(ArgumentError):
    """`argument` (wte_key or wpe_key) names a tensor the checkpoint does not hold."""

    def __init__(self, argument: str, key: str):
        self.argument, self.key = argument, key
        super().__init__(argument)

    def worded(self, name: str) -> str:
        return f"{name}: no tensor named '{self.key}' in the checkpoint"


class StepError(ArgumentError):
    """The training step asked for (`step`) is not there; `problem` says why. Exit status 2."""

    argument = "step"

    def __init__(self, step: int, problem: str):
        self.step, self.problem = step, problem
        super().__init__("step=", status=ExitStatus.USAGE)

    def worded(self, name: str) -> str:
        return f"{name}{self.step}: {self.problem}"


class TokenizerFileError(ArgumentError):
    """An llm.c tokenizer file given where the model belongs (it goes to `tokenizer`)."""

    argument = "tokenizer"

    def __init__(self, path: str):
        self.path = path
        super().__init__("tokenizer=")

    def worded(self, name: str) -> str:
        return f"{self.path}: an llm.c tokenizer file, not a model (pass it with {name})"


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (at most `limit` characters), or its type's name."""
    lines = str(e).strip().splitlines()
    return lines[0][:limit] if lines else type(e).__name__


def missing_extra(package: str, extra: str, purpose: str) -> EmbscopeError:
    """The error for an optional dependency that is not installed, with the install hint."""
    return EmbscopeError(
        f"{purpose} needs {package}, which is not installed: pip install 'embscope[{extra}]'"
    )
