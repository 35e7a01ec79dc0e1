#!/usr/bin/env python3
"""Where the agent's time goes during an iperf3 run: system calls per agent (strace -c -f).

    sudo python3 benchmarks/profile_dataplane.py [--seconds 4] [--udp] [--portable]

Same lab as bench_dataplane.py (agent path only); strace slows the agents down, so read the
counts (calls per frame), not the throughput.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lab import BenchLab
from bench_dataplane import PORT_IPERF, agent_path


def _threads(pid: int) -> dict:
    """Thread name -> CPU seconds so far (user + system; "/sys" entries: system alone)."""
    import os
    res = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip() + "/" + tid
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        res[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        res[name + "/sys"] = int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return res


def _stat() -> dict:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return {"user": v[0] + v[1], "sys": v[2], "idle": v[3] + v[4], "irq": v[5], "softirq": v[6]}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--udp", action="store_true")
    p.add_argument("--rate", default="20G", help="iperf3 -b for --udp (default 20G)")
    p.add_argument("--portable", action="store_true")
    p.add_argument("--strace", action="store_true", help="count system calls (slows the agents)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ovprof-") as tmp:
        lab = BenchLab(2, Path(tmp))
        try:
            path = agent_path(lab, args.portable)
            lab.exec(path.src_ns, "ping", "-c", "2", "-i", "0.05", path.dst_ip)
            server = lab.popen(path.dst_ns, "iperf3", "-s", "-1", "-p", str(PORT_IPERF))
            time.sleep(0.4)
            cmd = ["iperf3", "-c", path.dst_ip, "-p", str(PORT_IPERF), "-t", str(args.seconds)]
            if args.udp:
                cmd += ["-u", "-l", "1400", "-b", args.rate]
            client = lab.popen(path.src_ns, *cmd)
            tracers = []
            if args.strace:
                time.sleep(0.5)
                for host, pid in zip(("h1", "h2"), path.pids):
                    out = open(Path(tmp) / f"strace-{host}.txt", "w")  # noqa: SIM115
                    tracers.append((host, out, subprocess.Popen(
                        ["timeout", "-s", "INT", str(args.seconds - 1.5), "strace", "-c", "-f",
                         "-p", str(pid)], stderr=out, stdout=out)))
            time.sleep(1.0)
            t0 = {pid: _threads(pid) for pid in path.pids}
            s0 = _stat()
            time.sleep(2.0)
            s1 = _stat()
            t1 = {pid: _threads(pid) for pid in path.pids}
            tck = __import__("os").sysconf("SC_CLK_TCK") * 2.0
            print("machine CPU over 2 s (cores):", {k: round((s1[k] - s0[k]) / tck, 2)
                                                   for k in s0})
            for host, pid in zip(("h1", "h2"), path.pids):
                print(host, "CPU per thread over 2 s:",
                      {name: round((t1[pid][name] - t0[pid].get(name, 0)) / 2.0, 2)
                       for name in t1[pid] if t1[pid][name] - t0[pid].get(name, 0) > 0})
            out, _ = client.communicate(timeout=args.seconds + 30)
            print(out[-900:])
            for host, f, t in tracers:
                t.wait()
                f.close()
                print(f"== {host} ==")
                print((Path(tmp) / f"strace-{host}.txt").read_text()[:2500])
            for host in ("h1", "h2"):
                print(host, lab.agents[host].call("counters"))
                snmp = lab.exec(lab.host_ns[host], "cat", "/proc/net/snmp").splitlines()
                print(host, "underlay", *[ln for ln in snmp if ln.startswith("Udp:")][:2])
                print(lab.exec(f"{lab.prefix}-{host}-e0", "ip", "-s", "link", "show", "eth0"))
                snmp = lab.exec(f"{lab.prefix}-{host}-e0", "cat", "/proc/net/snmp").splitlines()
                print(host, "endpoint", *[ln for ln in snmp if ln.startswith("Udp:")][:2])
            server.kill()
        finally:
            lab.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
