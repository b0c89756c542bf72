"""profiles/risk.yaml is data other code trusts: every name in it must be real, and the
calls that break the sandbox model must be rated high or critical."""

from __future__ import annotations

from sandboxctl.engine import constants, syscalls
from sandboxctl.engine.groups import expand
from sandboxctl.engine.risk import LEVELS, load_risk

BOOK = load_risk()
DATA = BOOK._data  # the parsed file itself


def test_every_syscall_named_exists_on_x86_64():
    named = set(DATA["syscalls"]) | set(DATA["learn"]["narrow_safe"]) | set(DATA["learn"]["always_allow"])
    for cap in DATA["capabilities"].values():
        named |= set(cap.get("unlocks", ()))
    unknown = sorted(n for n in named if syscalls.number(n) is None)
    assert unknown == []


def test_every_capability_is_rated_and_real():
    assert set(DATA["capabilities"]) <= set(constants.CAPABILITIES)
    missing = sorted(set(constants.CAPABILITIES) - set(DATA["capabilities"]))
    # Unlisted capabilities fall back to default_capability_risk (high), never lower.
    assert DATA["default_capability_risk"] in ("high", "critical"), missing


def test_levels_and_reasons():
    for name, e in DATA["syscalls"].items():
        assert e["risk"] in LEVELS and e["why"] and e["purpose"], name
        for i in e.get("narrow", ()):
            assert 0 <= i < 6, name
    for name, e in DATA["capabilities"].items():
        assert e["risk"] in LEVELS and e["why"], name
    for e in DATA["sensitive_paths"]:
        assert e["writable"] in LEVELS and e["readonly"] in LEVELS and e["path"].startswith("/")


def test_what_the_design_denies_is_rated_high_or_critical():
    low = {n: BOOK.syscall(n).risk for n in expand("dangerous")
           if BOOK.syscall(n).risk not in ("high", "critical")}
    assert set(low) <= {"kcmp", "vhangup"}, low  # nuisance calls, denied for hygiene
    for n in ("io_uring_setup", "ptrace", "process_vm_writev", "bpf", "perf_event_open",
              "keyctl", "mount", "unshare", "setns", "open_by_handle_at", "userfaultfd",
              "init_module", "kexec_load"):
        assert BOOK.syscall(n).risk == "critical", n
