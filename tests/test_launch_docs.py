"""Every command example in docs/apply.md runs, and prints what the page says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from _helpers_launch import REPO


def _examples() -> list[tuple[str, list[str]]]:
    text = (REPO / "docs" / "apply.md").read_text()
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        if "# interactive" in block:
            continue  # the pty is exercised by test_launch_lifecycle.py
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out:
                out[-1][1].append(line)
    return out


EXAMPLES = _examples()


def test_the_page_has_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("command,expected", EXAMPLES, ids=[c[:40] for c, _ in EXAMPLES])
def test_doc_example(command, expected, tmp_path):
    if not shutil.which("sandboxctl"):
        pytest.skip("sandboxctl is not on PATH (run .ci/setup)")
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp_path))
    try:
        r = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True,
                           env=env, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        for path in re.findall(r"/tmp/[\w.-]+", command):  # files the example wrote
            if os.path.isfile(path):
                os.unlink(path)
    assert r.stdout.splitlines() == expected, r.stderr
