#!/usr/bin/env python3
"""Path-MTU verdicts on a fault topology: time per pair, all pairs at once, and tracepath.

    sudo python3 benchmarks/bench_pmtu.py [--topology fixtures/war-story.yaml] [--json]

Builds the topology (fresh run prefix, removed at the end), starts one agent per host, and has
every agent probe all the others at the same time (``pmtu_probe``), as the pmtu check does.
Then ``tracepath -n -m 8`` runs for every ordered pair of the same lab (inside the source
host's namespace), for comparison. Goal: a verdict in <= 1 s per pair.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from _lab import ROOT, AgentProc, LabTopology, NetLab, kill_processes, new_prefix


def tracepath(ns: str, dst: str, timeout: float = 90) -> Dict[str, Any]:
    """``tracepath -n`` from lab namespace ``ns``: wall time, the pmtu it reports, last line.

    On a blackhole tracepath may not finish: it is stopped after ``timeout`` and what it
    printed so far is reported (``finished`` false).
    """
    cmd = ["ip", "netns", "exec", ns, "tracepath", "-n", "-m", "8", "-6" if ":" in dst else "-4", dst]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    finished = True
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, _ = proc.communicate()
        finished = False
    wall = time.monotonic() - t0
    pmtu = None
    for line in stdout.splitlines():
        if "pmtu" in line:
            pmtu = int(line.split("pmtu")[1].split()[0])
    lines = [ln.strip() for ln in stdout.strip().splitlines()]
    return {"seconds": round(wall, 2), "pmtu": pmtu, "finished": finished,
            "summary": lines[-1] if lines else ""}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topology", default=str(ROOT / "fixtures" / "war-story.yaml"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    topo = LabTopology.load(args.topology)
    prefix = new_prefix()
    lab = NetLab(topo, prefix)
    agents: Dict[str, AgentProc] = {}
    out: Dict[str, Any] = {"topology": Path(args.topology).name, "pairs": [], "tracepath": []}
    try:
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
            host_ns = lab.build()
            for h in topo.hosts:
                a = AgentProc(host_ns[h.name], Path(tmp) / f"{h.name}.log")
                agents[h.name] = a
                a.call("hello", protocol=1)
                a.call("configure", host=h.name, prefix=prefix, underlay=h.address)
            for a in agents.values():  # the responder answers member VTEPs only
                a.call("set_members", vteps=[x.address for x in topo.hosts])
                a.call("pmtu_listen")
            results: Dict[str, Any] = {}

            def probe(name: str) -> None:
                dsts = [x.address for x in topo.hosts if x.name != name]
                results[name] = agents[name].call("pmtu_probe", dsts=dsts)["results"]

            t0 = time.monotonic()
            threads = [threading.Thread(target=probe, args=(h.name,)) for h in topo.hosts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out["all_pairs_s"] = round(time.monotonic() - t0, 3)
            by_addr = {h.address: h.name for h in topo.hosts}
            for src, res in results.items():
                for dst, r in res.items():
                    out["pairs"].append({"pair": f"{src}->{by_addr[dst]}", "verdict": r["verdict"],
                                         "pmtu": r["pmtu"], "ms": r["ms"], "rounds": r["rounds"]})
            for a in agents.values():
                a.close()
            agents.clear()
            for a in topo.hosts:
                for b in topo.hosts:
                    if a is not b:
                        tp = tracepath(host_ns[a.name], b.address)
                        out["tracepath"].append({"pair": f"{a.name}->{b.name}", **tp})
    finally:
        for a in agents.values():
            a.close()
        kill_processes(prefix)
        lab.destroy()
    worst = max(p["ms"] for p in out["pairs"])
    out["worst_pair_ms"] = worst
    out["goal_ok"] = worst <= 1000
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"topology {out['topology']}: all {len(out['pairs'])} pairs in {out['all_pairs_s']} s "
          f"(worst pair {worst:.0f} ms, goal <= 1000 ms: {'met' if out['goal_ok'] else 'MISSED'})")
    for row in sorted(out["pairs"], key=lambda r: r["pair"]):
        print(f"  {row['pair']:<10} {row['verdict']:<12} pmtu {row['pmtu']!s:<5} "
              f"{row['ms']:>7.1f} ms  {row['rounds']} rounds")
    for row in out["tracepath"]:
        done = "" if row["finished"] else " (stopped, unfinished)"
        print(f"  tracepath {row['pair']:<10} pmtu {row['pmtu']!s:<5} {row['seconds']:>6.2f} s"
              f"{done}  ({row['summary']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
