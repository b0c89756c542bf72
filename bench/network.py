#!/usr/bin/env python3
"""iperf3 throughput, client in the sandbox and server on the host, for each network mode
of sandboxctl, against native loopback, Debian's slirp4netns and gVisor's runsc netstack.

    python bench/network.py [--seconds 3] [--json]

One TCP stream, the client sending. Prints Mbit/s (as received by the server) and the
ratios to native and to slirp4netns. Only loopback and namespaces this script creates are
used; everything it starts or creates is removed at the end.

How each row runs:
  native        iperf3 -c 127.0.0.1 on the host
  passthrough   sandboxctl apply (network.mode passthrough) -- iperf3 -c 127.0.0.1
  netstack      sandboxctl apply (network.mode netstack, egress 127.0.0.1/32) -- iperf3 -c 10.0.2.2
  none          sandboxctl apply (network.mode none): must fail to connect
  slirp4netns   a new net namespace + slirp4netns --configure --mtu=65520; iperf3 -c 10.0.2.2
  runsc         `runsc run` (its netstack, --network=sandbox) in a net namespace made here,
                joined by a veth pair to a second namespace running the server. `runsc do`
                would add a MASQUERADE rule and turn on ip_forward on the host, and refuses
                to run on this kernel anyway (it looks for /proc/sys/net/core/rmem_default,
                which every namespace shows here): so runsc runs in a private mount
                namespace where a tmpfs hides /proc/sys/net from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_iperf(out: str) -> float:
    """Mbit/s received by the server, from iperf3 -J output."""
    start = out.find("{")
    data = json.loads(out[start:])
    if "error" in data:
        raise RuntimeError(data["error"])
    return data["end"]["sum_received"]["bits_per_second"] / 1e6


def iperf_args(host: str, port: int, seconds: int) -> list[str]:
    return ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J"]


def run_iperf(argv: list[str], seconds: int, **kw) -> float:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, **kw)
    if r.returncode != 0 and "{" not in r.stdout:
        raise RuntimeError((r.stderr or r.stdout).strip().splitlines()[-1] if (r.stderr or r.stdout).strip() else f"exit {r.returncode}")
    return parse_iperf(r.stdout)


def server(stack: ExitStack, bind: str, port: int, netns_pid: int | None = None) -> None:
    argv = ["iperf3", "-s", "-B", bind, "-p", str(port)]
    if netns_pid:
        argv = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", *argv]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(lambda: (p.kill(), p.wait()))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        probe = ["ss", "-ltnH", f"sport = :{port}"]
        if netns_pid:
            probe = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", *probe]
        if subprocess.run(probe, capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError("iperf3 server did not start")


def netns_holder(stack: ExitStack) -> int:
    p = subprocess.Popen(["unshare", "--net", "sleep", "3600"])
    stack.callback(lambda: (p.kill(), p.wait()))
    while os.readlink(f"/proc/{p.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        time.sleep(0.01)
    return p.pid


def nsrun(pid: int, *argv: str) -> None:
    subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", *argv], check=True)


# -- the rows ------------------------------------------------------------------------------
def bench_native(port: int, seconds: int, _tmp: Path) -> float:
    return run_iperf(iperf_args("127.0.0.1", port, seconds), seconds)


def _profile(tmp: Path, name: str, network: str) -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text("apiVersion: sandboxctl/v1\nkind: SandboxProfile\n"
                 f"metadata: {{name: bench-{name}}}\nextends: default\n{network}")
    return p


def _apply(profile: Path, argv: list[str], seconds: int, tmp: Path) -> float:
    env = dict(os.environ, SANDBOXCTL_STATE_DIR=str(tmp / "state"))
    cmd = [PY, "-m", "sandboxctl.cli", "apply", "--tty", "never", str(profile), "--", *argv]
    return run_iperf(cmd, seconds, env=env, stdin=subprocess.DEVNULL)


def bench_passthrough(port: int, seconds: int, tmp: Path) -> float:
    prof = _profile(tmp, "passthrough", "network: {mode: passthrough}\n")
    return _apply(prof, iperf_args("127.0.0.1", port, seconds), seconds, tmp)


def bench_netstack(port: int, seconds: int, tmp: Path) -> float:
    prof = _profile(tmp, "netstack", "network:\n  mode: netstack\n  egress:\n"
                    f"    - {{cidr: 127.0.0.1/32, ports: [{port}], protocol: tcp}}\n")
    return _apply(prof, iperf_args("10.0.2.2", port, seconds), seconds, tmp)


def bench_none(port: int, seconds: int, tmp: Path) -> float:
    prof = _profile(tmp, "none", "network: {mode: none}\n")
    try:
        _apply(prof, iperf_args("127.0.0.1", port, 1), 1, tmp)
    except RuntimeError as exc:
        raise RuntimeError(f"no network, as configured ({exc})") from None
    raise RuntimeError("mode none reached the host: this is a bug")


def bench_slirp(port: int, seconds: int, tmp: Path) -> float:
    if not shutil.which("slirp4netns"):
        raise RuntimeError("slirp4netns is not installed")
    with ExitStack() as stack:
        pid = netns_holder(stack)
        ready_r, ready_w = os.pipe()
        slirp = subprocess.Popen(["slirp4netns", "--configure", "--mtu=65520", f"--ready-fd={ready_w}",
                                  str(pid), "tap0"], pass_fds=(ready_w,),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(ready_w)
        stack.callback(lambda: (slirp.kill(), slirp.wait()))
        os.read(ready_r, 1)
        os.close(ready_r)
        argv = ["nsenter", f"--net=/proc/{pid}/ns/net", *iperf_args("10.0.2.2", port, seconds)]
        return run_iperf(argv, seconds)


def bench_runsc(_port: int, seconds: int, tmp: Path) -> float:
    if not shutil.which("runsc"):
        raise RuntimeError("runsc is not installed")
    with ExitStack() as stack:
        srv = netns_holder(stack)
        ctr = netns_holder(stack)
        nsrun(ctr, "ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
              "netns", f"/proc/{srv}/ns/net")
        for pid, dev, addr in ((ctr, "veth0", "10.0.3.2/24"), (srv, "veth1", "10.0.3.1/24")):
            nsrun(pid, "ip", "link", "set", "lo", "up")
            nsrun(pid, "ip", "link", "set", dev, "mtu", "65520", "up")
            nsrun(pid, "ip", "addr", "add", addr, "dev", dev)
        nsrun(ctr, "ip", "route", "add", "default", "via", "10.0.3.1")
        port = 5201
        server(stack, "10.0.3.1", port, netns_pid=srv)
        bundle = tmp / "runsc-bundle"
        state = tmp / "runsc-state"
        bundle.mkdir()
        state.mkdir()
        subprocess.run(["runsc", "spec", "--", "true"], cwd=bundle, check=True, capture_output=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["root"] = {"path": "/", "readonly": True}
        spec["process"]["args"] = iperf_args("10.0.3.1", port, seconds)
        spec["process"]["terminal"] = False
        spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
        spec["linux"]["namespaces"] = [
            {"type": "network", "path": f"/proc/{ctr}/ns/net"} if n["type"] == "network" else n
            for n in spec["linux"]["namespaces"]]
        (bundle / "config.json").write_text(json.dumps(spec))
        cid = f"sandboxctl-bench-{os.getpid()}"
        stack.callback(lambda: subprocess.run(["runsc", f"--root={state}", "delete", "-force", cid],
                                              capture_output=True))
        inner = (f"mount -t tmpfs none /proc/sys/net && exec runsc --root={state} --network=sandbox "
                 f"--ignore-cgroups run --bundle {bundle} {cid}")
        return run_iperf(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner], seconds)


ROWS = [
    ("native", bench_native),
    ("passthrough", bench_passthrough),
    ("netstack", bench_netstack),
    ("none", bench_none),
    ("slirp4netns", bench_slirp),
    ("runsc", bench_runsc),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=3, help="iperf3 duration per row")
    ap.add_argument("--only", action="append", help="run only these rows (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/network.py needs root (namespaces, TAP devices).", file=sys.stderr)
        return 2
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sandboxctl-netbench-") as d, ExitStack() as stack:
        tmp = Path(d)
        port = free_port()
        server(stack, "127.0.0.1", port)
        for name, fn in ROWS:
            if args.only and name not in args.only:
                continue
            t = time.monotonic()
            try:
                results[name] = {"mbit_s": round(fn(port, args.seconds, tmp), 1)}
            except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
                results[name] = {"mbit_s": None, "note": str(exc)}
            results[name]["wall_s"] = round(time.monotonic() - t, 2)
    native = results.get("native", {}).get("mbit_s")
    slirp = results.get("slirp4netns", {}).get("mbit_s")
    for r in results.values():
        v = r["mbit_s"]
        r["vs_native"] = round(v / native, 3) if v and native else None
        r["vs_slirp4netns"] = round(v / slirp, 3) if v and slirp else None
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"iperf3, 1 stream, {args.seconds} s, client in the sandbox -> server on the host")
    print(f"{'mode':<12} {'Mbit/s':>10} {'x native':>9} {'x slirp':>8}  note")
    for name, r in results.items():
        v = f"{r['mbit_s']:.0f}" if r["mbit_s"] else "-"
        a = f"{r['vs_native']:.2f}" if r["vs_native"] else "-"
        b = f"{r['vs_slirp4netns']:.2f}" if r["vs_slirp4netns"] else "-"
        print(f"{name:<12} {v:>10} {a:>9} {b:>8}  {r.get('note', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
