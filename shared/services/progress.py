"""How a long operator command reports progress and how it stops part way.

The CLI draws progress; services only report it (``Progress``). A failure inside one step
becomes ``OperationStopped``, naming the step and the command that resumes; Ctrl-C becomes
``Interrupted``, naming the range still to do.
"""

from __future__ import annotations

from typing import Protocol

from shared.errors import PipelineError
from shared.rules.date_ranges import DateRange


class Progress(Protocol):
    def start_phase(self, name: str, total: int) -> None:
        """A phase of ``total`` dates begins."""

    def advance(self, dates: int, *, skipped: bool = False) -> None:
        """``dates`` more dates of the current phase are done (or were skipped)."""


class NoProgress:
    def start_phase(self, name: str, total: int) -> None:
        pass

    def advance(self, dates: int, *, skipped: bool = False) -> None:
        pass


class OperationStopped(PipelineError):
    """A multi-date operation stopped part way; the message says where and how to resume."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a chunked operation, after the chunks before ``remaining`` committed.

    Still a KeyboardInterrupt (nothing may swallow it as an error); ``remaining`` is the range
    still to do, so the CLI can print the command that resumes exactly there."""

    def __init__(self, remaining: DateRange) -> None:
        super().__init__(f"interrupted; {remaining} is left to do")
        self.remaining = remaining
