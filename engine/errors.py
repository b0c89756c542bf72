"""Exception types the CLI renders once. Every error a person can cause is one of these."""

from __future__ import annotations

from .record import record


class SandboxctlError(Exception):
    """Base of all expected errors. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint  # one sentence: what to do about it


@record
class Diagnostic:
    """One problem in a profile, at file:line:col."""

    file: str
    line: int
    col: int
    message: str  # what is wrong and what was expected
    path: str = ""  # the path in the document: syscalls.allow[2].name
    hint: str | None = None  # did-you-mean, or how to fix
    severity: str = "error"

    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def render(self) -> str:
        at = f" (at {self.path})" if self.path else ""
        text = f"{self.where()}: {self.severity}: {self.message}{at}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class ProfileError(SandboxctlError):
    """The profile is invalid. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics) or "invalid profile")


class HostError(SandboxctlError):
    """The host lacks a binary, a kernel feature or a privilege. Message + fix."""

    exit_code = 1


class SandboxError(SandboxctlError):
    """The sandbox could not be started or supervised."""

    exit_code = 1


__all__ = ["SandboxctlError", "Diagnostic", "ProfileError", "HostError", "SandboxError"]
