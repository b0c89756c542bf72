"""docs/review.md's CI recipe, run for real: the GitHub Actions step's script in a scratch
repository with a base and a pull-request branch, and the pre-commit hooks' entries on
staged profiles. Every `sandboxctl` example in the page parses."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

from _helpers_review import VENV_BIN, profile_text, write

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "review.md"
WORKFLOW = REPO / "docs" / "examples" / "review-workflow.yml"
PRECOMMIT = REPO / "docs" / "examples" / "pre-commit-config.yaml"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))


def _scratch_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    write(repo / "profiles" / "app.yaml", profile_text())
    write(repo / "profiles" / "tools.yaml", profile_text())
    write(repo / "README", "x\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    _git(repo, "checkout", "-q", "-b", "pr")
    return repo


def _workflow_step() -> str:
    wf = YAML(typ="safe").load(WORKFLOW.read_text())
    steps = wf["jobs"]["diff"]["steps"]
    step = next(s for s in steps if s.get("name") == "diff the changed profiles")
    assert step["env"]["BASE"].startswith("origin/")
    return step["run"]


def test_github_workflow_step(tmp_path):
    script = _workflow_step()
    repo = _scratch_repo(tmp_path)
    # The pull request: a low-risk change to app.yaml and a new profile.
    write(repo / "profiles" / "app.yaml", profile_text({"resources": "resources: {memory: 1Gi, pids: 64}\n"}))
    write(repo / "profiles" / "new.yaml", "apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"
          "metadata: {name: new}\nextends: default\nresources: {memory: 128Mi}\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "pr 1")
    env = dict(_env(), BASE="main")
    r = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    review = (repo / "review.md").read_text()
    assert "### sandboxctl diff: `main:profiles/app.yaml` → `profiles/app.yaml`" in review
    assert "### sandboxctl diff: `default` → `profiles/new.yaml`" in review
    assert "| low | resources | `memory` | widened |" in review
    assert "| info | resources | `memory` | narrowed |" in review  # new.yaml vs default
    assert "tools.yaml" not in review  # unchanged files are not diffed
    # A second commit makes a profile critical: the check fails, the table says why.
    write(repo / "profiles" / "tools.yaml",
          profile_text({"capabilities": "capabilities: {keep: [CAP_NET_RAW, CAP_SYS_ADMIN]}\n"}))
    _git(repo, "commit", "-q", "-am", "pr 2")
    r = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "| **critical** | capability | `CAP_SYS_ADMIN` | added |" in (repo / "review.md").read_text()


def _hooks() -> list[dict]:
    cfg = YAML(typ="safe").load(PRECOMMIT.read_text())
    return [h for r in cfg["repos"] for h in r["hooks"]]


def _run_hook(hook: dict, repo: Path) -> subprocess.CompletedProcess[str]:
    """As pre-commit runs a `language: system` hook: entry split by shlex, then the staged
    files matching `files` appended."""
    staged = _git(repo, "diff", "--cached", "--name-only").split()
    files = [f for f in staged if re.search(hook["files"], f)]
    return subprocess.run(shlex.split(hook["entry"]) + files, cwd=repo, env=_env(),
                          capture_output=True, text=True, timeout=120)


def test_pre_commit_hooks(tmp_path):
    repo = _scratch_repo(tmp_path)
    hooks = {h["id"]: h for h in _hooks()}
    assert set(hooks) == {"sandboxctl-validate", "sandboxctl-diff"}
    # A harmless change passes both hooks.
    write(repo / "profiles" / "app.yaml", profile_text({"resources": "resources: {memory: 128Mi, pids: 64}\n"}))
    _git(repo, "add", "profiles/app.yaml")
    for h in hooks.values():
        r = _run_hook(h, repo)
        assert r.returncode == 0, (h["id"], r.stdout, r.stderr)
    # Allowing ptrace is refused by the diff hook.
    write(repo / "profiles" / "app.yaml",
          profile_text({"syscalls": "syscalls:\n  allow: [ptrace]\n"}))
    _git(repo, "add", "profiles/app.yaml")
    assert _run_hook(hooks["sandboxctl-validate"], repo).returncode == 0
    r = _run_hook(hooks["sandboxctl-diff"], repo)
    assert r.returncode == 1 and "ptrace" in r.stdout
    # An invalid profile is refused by the validate hook, with its line.
    write(repo / "profiles" / "app.yaml", profile_text({"syscalls": "syscalls:\n  alow: [read]\n"}))
    _git(repo, "add", "profiles/app.yaml")
    r = _run_hook(hooks["sandboxctl-validate"], repo)
    assert r.returncode != 0 and "app.yaml:" in (r.stdout + r.stderr)


def test_every_example_command_in_the_page_parses():
    from sandboxctl.cli.main import build_parser

    text = DOC.read_text()
    commands = [ln[2:] for block in re.findall(r"```console\n(.*?)```", text, re.S)
                for ln in block.splitlines() if ln.startswith("$ sandboxctl ")]
    assert len(commands) >= 12
    for cmd in commands:
        argv = shlex.split(cmd.split("  #")[0])[1:]
        args = build_parser(argv[0]).parse_args(argv)
        assert args._module.__name__.rsplit("_", 1)[1] in ("diff", "explain", "learn", "apply")
