"""Which rule of a Plan decides a call, evaluated in Python exactly as the kernel's
filter does. The Sentry names the rule of every trapped call with it, and `explain`
answers with it; neither needs libseccomp for that (engine/filter.py builds the filter,
and imports pyseccomp, which imports typing: ~3 ms the Sentry's start does without).
"""

from __future__ import annotations

from .plan import DefaultAction, Plan, SyscallRule


def rule_matches(rule: SyscallRule, args: tuple[int, ...] | list[int]) -> bool:
    """Evaluate a rule's argument conditions in Python, exactly as the kernel filter
    does (64-bit unsigned comparisons). Used by the Sentry to name the rule that
    decided a trapped call."""
    for c in rule.args:
        a = args[c.index] & 0xFFFFFFFFFFFFFFFF
        v = c.value & 0xFFFFFFFFFFFFFFFF
        if c.op == "eq":
            ok = a == v
        elif c.op == "ne":
            ok = a != v
        elif c.op == "lt":
            ok = a < v
        elif c.op == "le":
            ok = a <= v
        elif c.op == "gt":
            ok = a > v
        elif c.op == "ge":
            ok = a >= v
        else:  # masked_eq
            ok = (a & c.mask) == v
        if not ok:
            return False
    return True


def decide(plan: Plan, nr: int, args: tuple[int, ...] | list[int]) -> SyscallRule | DefaultAction:
    """The rule (or the default) that decides call `nr` with `args`, in Plan order."""
    for rule in plan.seccomp.rules:
        if rule.nr == nr and rule_matches(rule, args):
            return rule
    return plan.seccomp.default


__all__ = ["decide", "rule_matches"]
