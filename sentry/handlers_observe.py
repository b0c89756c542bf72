"""`observe`: a trapped call the Plan allows, let through untouched.

The compiler traps an allowed call when its rules need ordered evaluation (the kernel
cannot express them); once the Sentry's decide() picked an allowing rule the call runs
as made. Nothing is read from the caller, so CONTINUE is safe."""

from __future__ import annotations

from .call import Call, Continue, Decision, Memory, SentryContext
from .table import Entry


def observe(ctx: SentryContext, call: Call, mem: Memory) -> Decision:
    return Continue()


TABLE: dict[str, Entry] = {
    "observe": Entry("sandboxctl.sentry.handlers_observe:observe", "supported",
                     "allowed after the Sentry evaluated the rules in order; runs as made",
                     listed=False),
}
