#!/usr/bin/env python3
"""Wall-clock time of whole local audits: ``pytest --overlay-local=N --overlay-audit``.

    sudo python3 benchmarks/bench_audit.py [--hosts 3 16] [--json]

Each audit runs as ``python3 -m pytest -p no:cacheprovider --overlay-local=N --overlay-audit``
in a fresh temporary directory (no project conftest, no cache), the way a user runs it. The
goals: under 10 s for 3 hosts, under 30 s for 16.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

GOALS = {3: 10.0, 16: 30.0}


def run_audit(n: int, timeout: float) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ovaudit-") as tmp:
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--overlay-local={n}",
               "--overlay-audit"]
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        wall = time.monotonic() - t0
    tail = [ln for ln in r.stdout.splitlines() if ln.strip()][-1:] or [""]
    return {"hosts": n, "seconds": round(wall, 2), "rc": r.returncode, "summary": tail[0].strip(
        "= "), "goal_s": GOALS.get(n), "ok": r.returncode == 0 and wall < GOALS.get(n, 1e9)}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, nargs="+", default=[3, 16])
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (the local lab uses network namespaces): run with sudo")
    results = [run_audit(n, args.timeout) for n in args.hosts]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            goal = f"goal < {r['goal_s']:.0f} s" if r["goal_s"] else ""
            print(f"--overlay-local={r['hosts']:<3} {r['seconds']:7.2f} s  {goal:14} "
                  f"{'ok' if r['ok'] else 'MISS'}  ({r['summary']})")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
