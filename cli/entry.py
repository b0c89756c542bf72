"""Write the `sandboxctl` command: a script that starts the interpreter without `site`.

    python -m sandboxctl.cli.entry /usr/local/bin/sandboxctl      (.ci/setup runs this)

The console script pip writes starts Python with the `site` module, which reads every
.pth file of the environment; an editable install's .pth imports a finder that pulls in
pathlib, importlib.util and re. That is ~10 ms of every `sandboxctl apply`, before any
of sandboxctl's code runs. The script written here runs the same entry point
(sandboxctl.cli.main:main) with `python -S` and puts on sys.path exactly what `site`
would have given sandboxctl: the environment's site-packages folders, and the folder
the `sandboxctl` package is in (through the editable finder or a regular install alike,
as found now, when the script is written). Rewrite it when the package moves, as
.ci/setup does on every run. Child interpreters sandboxctl starts (the netstack) are
ordinary ones and get `site` as usual.
"""

from __future__ import annotations

import os
import site
import sys

_TEMPLATE = '''#!{python} -S
# sandboxctl: written by `python -m sandboxctl.cli.entry` (cli/entry.py says why: the
# interpreter starts without `site`, ~10 ms sooner). Write it again if the package moves.
import sys
sys.path[0:1] = {site_dirs!r}
import types
_pkg = types.ModuleType("sandboxctl")
_pkg.__path__ = {pkg_dirs!r}
sys.modules["sandboxctl"] = _pkg
del types, _pkg
from sandboxctl.cli.main import main
sys.exit(main())
'''


def script_text(python: str | None = None) -> str:
    """The script, for this interpreter and where sandboxctl is imported from now."""
    import sandboxctl.cli

    # sandboxctl.cli lives in <package folder>/cli (repository checkout or site-packages)
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(sandboxctl.cli.__file__)))
    site_dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
    return _TEMPLATE.format(python=python or sys.executable, site_dirs=site_dirs,
                            pkg_dirs=[pkg_dir])


def install(target: str, python: str | None = None) -> None:
    """Write the script to `target` (replacing a file or symlink there), mode 0755."""
    interp = python or sys.executable
    if any(c.isspace() for c in interp):
        raise SystemExit(f"sandboxctl: cannot write a #! line for {interp!r} (it has a space); "
                         "use the console script pip installed instead")
    tmp = f"{target}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(script_text(interp))
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: python -m sandboxctl.cli.entry TARGET\n")
        return 2
    install(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
