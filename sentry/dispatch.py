"""From a trapped call to a Decision, the same on every platform.

The Dispatcher is built once per Sentry from the Plan: for each trapped syscall number it
precomputes a slot (the handler, or the rule when one rule decides the call whatever its
arguments), so the trap path is a list index plus one function call. Calls whose rules
look at arguments go through engine.filter.decide (Python, same semantics as the kernel).

What the rule's action means for a trapped call:
    emulate       the handler the table names (rule.handler, else the syscall's name)
    allow (trap)  the handler if one is named (execve: observe), else Continue
    deny          event + Errno(rule.errno)
    kill          event + Kill (the platform SIGKILLs the thread group)
    log           event + Continue (nothing was decided from memory)
"""

from __future__ import annotations

import errno as _errno

from ..engine.decide import decide
from ..engine.plan import DefaultAction, Plan, SyscallRule
from .call import Call, Continue, Decision, Errno, Handler, Kill, Memory, SentryContext
from .decode import decode, errno_name, syscall_name
from .dispatch_util import read_comm
from .table import Entry, load_table, resolve
from ..engine.record import record

TYPE_CHECKING = False  # typing stays off apply's start-up path (engine/record.py)
if TYPE_CHECKING:
    from typing import Any

NR_MAX = 512


@record
class Slot:
    """How one syscall number is served."""

    rule: SyscallRule | DefaultAction | None  # fixed rule; None: decide per call by args
    handler: Handler | None  # for emulate / observed calls
    may_block: bool = False
    observes: bool = False  # the handler may CONTINUE after reading memory (table.Entry)
    direct: bool = False  # a fixed rule served by its handler: the trap path's fast case

    @classmethod
    def make(cls, rule: SyscallRule | DefaultAction | None, handler: Handler | None,
             may_block: bool = False, observes: bool = False) -> "Slot":
        direct = handler is not None and rule is not None and rule.action in ("emulate", "allow")
        return cls(rule, handler, may_block, observes, direct)


def rule_ref(rule: SyscallRule | DefaultAction) -> dict[str, Any] | None:
    src = rule.source
    if src is None:
        return None
    return {"file": src.file, "line": src.line, "col": src.col, "text": src.text}


class Dispatcher:
    def __init__(self, ctx: SentryContext, table: dict[str, Entry] | None = None) -> None:
        self.ctx = ctx
        self.plan: Plan = ctx.plan
        self.table = load_table() if table is None else table
        self._handlers: dict[str, tuple[Handler, bool, bool]] = {}
        self.slots: list[Slot | None] = [None] * NR_MAX
        # the names of the calls, by number: the Plan's rules name every trapped one; the
        # others (a trapping default) are looked up once, by call_name
        self.names: list[str | None] = [None] * NR_MAX
        for r in self.plan.seccomp.rules:
            if 0 <= r.nr < NR_MAX:
                self.names[r.nr] = r.name
        self.default_slot = self._slot_for_rule(self.plan.seccomp.default, "")
        for nr in self.plan.trapped_numbers():
            if 0 <= nr < NR_MAX:
                self.slots[nr] = self._build_slot(nr)


    # -- set-up ---------------------------------------------------------------------
    def _handler(self, name: str | None) -> tuple[Handler | None, bool, bool]:
        if not name:
            return None, False, False
        if name not in self._handlers:
            entry = self.table.get(name)
            if entry is None or entry.handler is None:
                return None, False, False
            self._handlers[name] = (resolve(entry.handler), entry.may_block, entry.observes)
        return self._handlers[name]

    def _slot_for_rule(self, rule: SyscallRule | DefaultAction, sysname: str) -> Slot:
        hname = getattr(rule, "handler", None)
        if rule.action == "emulate" or (rule.action == "allow" and hname):
            h, block, observes = self._handler(hname or sysname)
            return Slot.make(rule, h, block, observes)
        return Slot.make(rule, None)

    def _build_slot(self, nr: int) -> Slot:
        rules = self.plan.rules_for(nr)
        if len(rules) == 1 and not rules[0].args:
            return self._slot_for_rule(rules[0], rules[0].name)
        if not rules:
            return self.default_slot
        # Several rules or argument checks: the rule is chosen per call. A handler
        # named by any of them may block, so be conservative.
        block = any(self._slot_for_rule(r, r.name).may_block for r in rules)
        return Slot.make(None, None, block)

    # -- the trap path ---------------------------------------------------------------
    def slot(self, nr: int) -> Slot:
        s = self.slots[nr] if 0 <= nr < NR_MAX else None
        return s if s is not None else self.default_slot

    def call_name(self, nr: int) -> str:
        if not 0 <= nr < NR_MAX:
            return syscall_name(nr)
        name = self.names[nr]
        if name is None:
            name = self.names[nr] = syscall_name(nr)
        return name

    def dispatch(self, call: Call, mem: Memory, slot: Slot | None = None) -> Decision:
        slot = slot or self.slot(call.nr)
        if slot.direct:
            d = slot.handler(self.ctx, call, mem)  # type: ignore[misc]
            if d.__class__ is Continue and not slot.observes and getattr(mem, "touched", False):
                return self._toctou(call, mem, slot.rule)  # type: ignore[arg-type]
            return d
        rule = slot.rule
        if rule is None:
            rule = decide(self.plan, call.nr, call.args)
            slot = self._slot_for_rule(rule, call.name)
        action = rule.action
        if action == "deny":
            err = rule.errno or _errno.EPERM
            self._record(call, mem, rule, "deny", err)
            return Errno(err)
        if action == "kill":
            ev = self._record(call, mem, rule, "kill", None)
            return Kill(ev.get("decoded", call.name))
        if action == "log":
            self._record(call, mem, rule, "log", None)
            return Continue()  # nothing was decided from memory
        if slot.handler is not None:
            d = slot.handler(self.ctx, call, mem)
            if d.__class__ is Continue and not slot.observes and getattr(mem, "touched", False):
                return self._toctou(call, mem, rule)
            return d
        if action == "emulate":
            self._record(call, mem, rule, "deny", _errno.ENOSYS,
                         note="no Sentry handler for this call")
            return Errno(_errno.ENOSYS)
        return Continue()  # allow with trap and no handler: observed only

    def _toctou(self, call: Call, mem: Memory, rule: SyscallRule | DefaultAction) -> Decision:
        """The handler decided on memory the kernel would read again: refuse."""
        self._record(call, mem, rule, "deny", _errno.EPERM,
                     note="handler read the caller's memory, then asked to continue "
                          "(time-of-check/time-of-use); refused")
        return Errno(_errno.EPERM)

    def _record(self, call: Call, mem: Memory, rule: SyscallRule | DefaultAction,
                action: str, err: int | None, note: str | None = None) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "pid": call.pid, "comm": read_comm(call.pid), "kind": "syscall",
            "syscall": call.name, "nr": call.nr, "args": list(call.args),
            "decoded": decode(call.name, call.args, mem), "action": action,
            "errno": err, "errno_name": errno_name(err) if err else None,
            "rule": rule_ref(rule) if isinstance(rule, SyscallRule) else None,
        }
        if not isinstance(rule, SyscallRule):
            ev["default"] = True
            if rule.source is not None:
                ev["default_rule"] = rule_ref(rule)
        if note:
            ev["note"] = note
        self.ctx.event(ev)
        return ev


__all__ = ["Dispatcher", "Slot", "rule_ref", "NR_MAX"]
