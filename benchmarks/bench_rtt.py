#!/usr/bin/env python3
"""Round-trip time through the agent's VTEP at several ping intervals, against kernel vxlan.

    sudo python3 benchmarks/bench_rtt.py [--intervals 0.001 0.01 0.2] [--count 200]
                                         [--variant ENV=VAL,...]...

Same lab as bench_dataplane.py. Each ``--variant`` starts the agents with those environment
settings (e.g. ``OVERLAY_DATAPLANE_THREADS=2``); without one the agents' defaults are measured.
Prints min/avg/max per interval; the added RTT is agent avg minus kernel avg of the same run.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lab import BenchLab
from bench_dataplane import Path2, agent_path, kernel_path


def pings(lab: BenchLab, path: Path2, interval: float, count: int) -> Dict[str, float]:
    lab.exec(path.src_ns, "ping", "-c", "3", "-i", "0.05", "-W", "1", path.dst_ip)
    n = max(5, min(count, int(20 / interval)))  # at most ~20 s per interval
    out = lab.exec(path.src_ns, "ping", "-c", str(n), "-i", str(interval), "-q", path.dst_ip,
                   timeout=n * interval + 30)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    if not m:
        raise RuntimeError(f"cannot parse ping output: {out}")
    return {"min": float(m.group(1)), "avg": float(m.group(2)), "max": float(m.group(3)),
            "count": n}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--intervals", type=float, nargs="+", default=[0.001, 0.01, 0.2])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--variant", action="append", default=[], metavar="ENV=VAL,...")
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
            kpath = kernel_path(lab)
            rows.append(("kernel vxlan", [pings(lab, kpath, i, args.count)
                                          for i in args.intervals]))
        finally:
            lab.close()
    kernel = rows[-1][1]
    for name, res in rows:
        print(name)
        for i, r, k in zip(args.intervals, res, kernel):
            print(f"  interval {i * 1000:6.1f} ms: min/avg/max {r['min']:.3f}/{r['avg']:.3f}/"
                  f"{r['max']:.3f} ms  added (avg) +{r['avg'] - k['avg']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
