#!/usr/bin/env python3
"""SSH deploy benchmark: connect + log in + SFTP upload of agent.pyz + start + first answer.

    sudo python3 benchmarks/bench_ssh_deploy.py [--hosts 3 8 16] [--rounds 3] [--json]

For each host count N: a namespace lab of N hosts, each running its own OpenSSH sshd (fresh run
prefix, underlay 198.18.0.0/24, controller namespace 198.18.0.254), then the remote-mode
transport starts the agent on all N hosts in parallel, exactly as ``--overlay-hosts`` does,
and the time until every agent has answered ``hello`` is taken (median of the rounds; each round
a fresh run prefix, agents stopped in between). The goal: 16 hosts in < 3 s, growing well
below linearly. Everything is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "agents")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import yaml  # noqa: E402

from overlay_agent import PROTOCOL_VERSION  # noqa: E402
from pytest_overlay.deploy import build_agent  # noqa: E402
from pytest_overlay.inventory import parse_inventory  # noqa: E402
from pytest_overlay.lab.netlab import NetLab  # noqa: E402
from pytest_overlay.lab.sshd import SshdLab  # noqa: E402
from pytest_overlay.lab.topology import LabTopology  # noqa: E402
from pytest_overlay.naming import kill_processes, new_prefix  # noqa: E402
from pytest_overlay.transport.ssh import SshTransport  # noqa: E402

GOAL_16_S = 3.0


async def _round(pyz: Path, inventory: Any) -> Dict[str, float]:
    ssh = SshTransport(pyz, new_prefix(), inventory)
    names = [h.name for h in inventory.hosts]
    t0 = time.monotonic()
    c0 = time.process_time()
    each: List[float] = []

    async def one(name: str) -> Any:
        agent = await ssh.start(name)
        await agent.client.call("hello", protocol=PROTOCOL_VERSION)
        each.append(time.monotonic() - t0)
        return agent

    agents = await asyncio.gather(*(one(n) for n in names))
    total = time.monotonic() - t0
    cpu = time.process_time() - c0
    await asyncio.gather(*(a.stop() for a in agents))
    await ssh.close()
    return {"total_s": total, "first_s": min(each), "cpu_s": cpu}


def measure(n: int, rounds: int) -> Dict[str, Any]:
    lab = NetLab(LabTopology.flat(n), new_prefix())
    sl = None
    try:
        sl = SshdLab(lab, lab.build()).start()
        inventory = parse_inventory(yaml.safe_dump(sl.inventory()))
        with tempfile.TemporaryDirectory(prefix=f"{lab.prefix}-bench-") as tmp:
            pyz = build_agent(Path(tmp))
            size = pyz.stat().st_size
            runs = [asyncio.run(_round(pyz, inventory)) for _ in range(rounds)]
    finally:
        if sl is not None:
            sl.stop()
        kill_processes(lab.prefix)
        lab.destroy()
    totals = [r["total_s"] for r in runs]
    return {"hosts": n, "rounds": rounds, "pyz_bytes": size,
            "median_s": round(statistics.median(totals), 3), "min_s": round(min(totals), 3),
            "max_s": round(max(totals), 3),
            "first_host_s": round(statistics.median(r["first_s"] for r in runs), 3),
            "controller_cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 8, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = [measure(n, args.rounds) for n in args.hosts]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    base = rows[0]
    print(f"agent.pyz {base['pyz_bytes'] / 1024:.0f} KiB; median of {args.rounds} rounds; "
          "all hosts in parallel, until every agent answered hello")
    print(f"{'hosts':>5} {'median s':>9} {'min s':>7} {'max s':>7} {'first host s':>13} "
          f"{'x hosts':>8} {'x time':>7} {'ctl cpu s':>10}")
    for r in rows:
        print(f"{r['hosts']:>5} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f} "
              f"{r['first_host_s']:>13.3f} {r['hosts'] / base['hosts']:>8.2f} "
              f"{r['median_s'] / base['median_s']:>7.2f} {r['controller_cpu_s']:>10.3f}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (every lab host's "
          "sshd and Python share them; real hosts each bring their own)")
    r16 = next((r for r in rows if r["hosts"] == 16), None)
    if r16 is not None:
        verdict = "met" if r16["median_s"] < GOAL_16_S else "MISSED"
        print(f"goal: 16 hosts < {GOAL_16_S:g} s: {verdict} ({r16['median_s']:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
