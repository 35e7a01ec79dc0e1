#!/usr/bin/env python3
"""Round-trip time through the agent's VTEP at several ping intervals, against kernel vxlan.

    sudo python3 benchmarks/bench_rtt.py [--intervals 0.001 0.01 0.2] [--count 200]
                                         [--variant ENV=VAL,...]... [--floor]

Same lab as bench_dataplane.py. Each ``--variant`` starts the agents with those environment
settings (e.g. ``OVERLAY_DATAPLANE_THREADS=2``); without one the agents' defaults are measured.
``--floor`` also measures the least a process per host can add (``_relay.py``: a relay that
only moves frames, one per system call), in CPython and, when a C compiler is installed, in C.
Prints min/avg/max per interval; the added RTT is avg minus kernel avg of the same run; for the
agents and relays also their CPU time and time spent waiting for a CPU per round trip
(``/proc/PID/task/*/schedstat``), in all and per host.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lab import BenchLab, machine
from _relay import build_c
from bench_dataplane import Path2, agent_path, kernel_path

RELAY = Path(__file__).resolve().parent / "_relay.py"


def schedstat(pids: List[int]) -> List[Tuple[int, int, int]]:
    """Per process: nanoseconds its threads spent on a CPU, and runnable waiting for one, and
    how many times they were given a CPU (``/proc/PID/task/*/schedstat``)."""
    out = []
    for pid in pids:
        run = wait = slices = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    fields = f.read().split()
            except OSError:  # a thread that has just ended
                continue
            run += int(fields[0])
            wait += int(fields[1])
            slices += int(fields[2])
        out.append((run, wait, slices))
    return out


def pings(lab: BenchLab, path: Path2, interval: float, count: int) -> Dict[str, Any]:
    """Ping stats in ms; for a path with processes of its own (agents, relays) also their CPU
    time and their time waiting for a CPU per round trip, in us (from /proc schedstat)."""
    lab.exec(path.src_ns, "ping", "-c", "3", "-i", "0.05", "-W", "1", path.dst_ip)
    n = max(5, min(count, int(20 / interval)))  # at most ~20 s per interval
    before = schedstat(path.pids)
    out = lab.exec(path.src_ns, "ping", "-c", str(n), "-i", str(interval), "-q", path.dst_ip,
                   timeout=n * interval + 30)
    after = schedstat(path.pids)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    if not m:
        raise RuntimeError(f"cannot parse ping output: {out}")
    res = {"min": float(m.group(1)), "avg": float(m.group(2)), "max": float(m.group(3)),
           "count": n}
    if path.pids:
        d = [[(b - a) / n for a, b in zip(p0, p1)] for p0, p1 in zip(before, after)]
        res["cpu_us"] = sum(x[0] for x in d) / 1000
        res["wait_us"] = sum(x[1] for x in d) / 1000
        res["hosts"] = [{"cpu_us": x[0] / 1000, "wait_us": x[1] / 1000, "slices": x[2]}
                        for x in d]
    return res


def relay_path(lab: BenchLab, name: str, binary: Optional[Path],
               procs: List[subprocess.Popen[str]]) -> Path2:
    """A relay process per host (``_relay.py``), each with a TAP in a fresh endpoint namespace."""
    ips = {"h1": "10.12.0.2", "h2": "10.12.0.3"}
    ens = {}
    for host, peer in (("h1", "h2"), ("h2", "h1")):
        ens[host] = lab.add_ns(f"{host}-{name}")
        cmd = [sys.executable, str(RELAY), f"{lab.prefix}{name}", ens[host], f"{ips[host]}/16",
               lab.address(host), lab.address(peer)]
        if binary is not None:
            cmd += ["--exec", str(binary)]
        proc = lab.popen(lab.host_ns[host], *cmd)
        procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"relay on {host} did not start: {proc.communicate()[1]}")
    # ``ip netns exec`` execs the relay (and the relay the C loop): one pid each, all along
    return Path2(name, ens["h1"], ens["h2"], ips["h2"], [p.pid for p in procs])


def stop(procs: List[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.kill()
        proc.communicate()
    procs.clear()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--intervals", type=float, nargs="+", default=[0.001, 0.01, 0.2])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--variant", action="append", default=[], metavar="ENV=VAL,...")
    p.add_argument("--floor", action="store_true",
                   help="also measure a bare relay per host, in CPython and in C")
    args = p.parse_args(argv)
    variants = [dict(kv.split("=", 1) for kv in v.split(",")) for v in args.variant] or [{}]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ovbench-") as tmp:
        lab = BenchLab(2, Path(tmp))
        try:
            for env in variants:
                path = agent_path(lab, False, extra_env=env)
                rows.append((f"agent {env or 'default'}",
                             [pings(lab, path, i, args.count) for i in args.intervals]))
                lab.stop_agents()
            if args.floor:
                procs: List[subprocess.Popen[str]] = []
                try:
                    loops = [("py", "floor: bare relay, CPython", None)]
                    binary = build_c(Path(tmp))
                    if binary is None:
                        print("no C compiler: the C relay is skipped", file=sys.stderr)
                    else:
                        loops.append(("c", "floor: bare relay, C", binary))
                    for name, label, exe in loops:
                        path = relay_path(lab, name, exe, procs)
                        rows.append((label, [pings(lab, path, i, args.count)
                                             for i in args.intervals]))
                        stop(procs)
                finally:
                    stop(procs)
            kpath = kernel_path(lab)
            rows.append(("kernel vxlan", [pings(lab, kpath, i, args.count)
                                          for i in args.intervals]))
        finally:
            lab.close()
    kernel = rows[-1][1]
    print(f"(machine: {machine()})")
    for name, res in rows:
        print(name)
        for i, r, k in zip(args.intervals, res, kernel):
            cpu = (f"  per round trip: CPU {r['cpu_us']:.0f} us, waiting for a CPU "
                   f"{r['wait_us']:.0f} us" if "cpu_us" in r else "")
            print(f"  interval {i * 1000:6.1f} ms: min/avg/max {r['min']:.3f}/{r['avg']:.3f}/"
                  f"{r['max']:.3f} ms  added (avg) +{r['avg'] - k['avg']:.3f} ms{cpu}")
            for host, h in zip(("h1 (the ping's side)", "h2"), r.get("hosts", [])):
                print(f"    {host}: CPU {h['cpu_us']:.0f} us, waiting {h['wait_us']:.0f} us, "
                      f"{h['slices']:.2f} times on a CPU per round trip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
