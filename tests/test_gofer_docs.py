"""The command examples of docs/gofer.md, run as written: each `$ command` line's output
(stdout and stderr) must be the lines that follow it in the console block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "gofer.md"


def examples() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out:
                out[-1][1].append(line)
    return out


def test_the_doc_has_examples():
    assert len(examples()) >= 5


@pytest.mark.parametrize("command,expected", examples(), ids=[c for c, _ in examples()])
def test_doc_example(command, expected, tmp_path):
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path))
    env["PATH"] = str(Path(sys.executable).parent) + ":" + env.get("PATH", "")
    motd = Path("/etc/motd").read_bytes() if Path("/etc/motd").exists() else None
    cp = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60,
                        env=env, stdin=subprocess.DEVNULL, cwd=DOC.parent.parent)
    got = (cp.stdout + cp.stderr).splitlines()
    assert got == expected
    if motd is not None:  # the overlay kept the host's copy unchanged
        assert Path("/etc/motd").read_bytes() == motd
