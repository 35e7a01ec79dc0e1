#!/usr/bin/env python3
"""How long this machine takes to wake a sleeping process, by how long it slept.

    python3 benchmarks/bench_wakeup.py [--intervals 0.001 0.01 0.1] [--count 300] [--poll-idle]

No network at all: a parent writes its clock into a pipe every interval, a child blocked in
``select`` on the pipe reads it and records how late it woke. The agent's data path is a chain
of such wake-ups (agent, other agent, agent again, then ping) where kernel vxlan has one, so
this is what the "added RTT" of bench_dataplane.py pays per hop on an idle machine.
``--poll-idle`` holds ``/dev/cpu_dma_latency`` at 0 while measuring (root): idle CPUs then
poll instead of halting, which shows how much of the cost is the idle state.
"""

from __future__ import annotations

import argparse
import os
import select
import struct
import sys
import time
from typing import Dict, List, Optional


def measure(interval: float, count: int) -> Dict[str, float]:
    r, w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the sleeper
        os.close(w)
        os.close(res_r)
        late: List[float] = []
        buf = b""
        while True:
            select.select([r], [], [], 5.0)
            now = time.monotonic_ns()
            chunk = os.read(r, 64)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                late.append((now - int(line)) / 1000.0)
        late.sort()
        n = len(late)
        out = (late[n // 2], late[n * 9 // 10], sum(late) / n) if n else (0.0, 0.0, 0.0)
        os.write(res_w, struct.pack("3d", *out))
        os._exit(0)
    os.close(r)
    os.close(res_w)
    time.sleep(0.05)
    for _ in range(count):
        time.sleep(interval)
        os.write(w, b"%d\n" % time.monotonic_ns())
    os.close(w)
    p50, p90, mean = struct.unpack("3d", os.read(res_r, 24))
    os.close(res_r)
    os.waitpid(pid, 0)
    return {"p50_us": p50, "p90_us": p90, "mean_us": mean}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--intervals", type=float, nargs="+", default=[0.001, 0.01, 0.1])
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--poll-idle", action="store_true",
                   help="hold /dev/cpu_dma_latency at 0 while measuring (needs root)")
    args = p.parse_args(argv)
    hold = None
    if args.poll_idle:
        hold = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
        os.write(hold, struct.pack("i", 0))
    try:
        for iv in args.intervals:
            n = max(20, min(args.count, int(30 / iv)))
            m = measure(iv, n)
            print(f"slept {iv * 1e3:6.1f} ms: woke late by p50 {m['p50_us']:6.1f} us, "
                  f"p90 {m['p90_us']:6.1f} us, mean {m['mean_us']:6.1f} us ({n} wake-ups)")
    finally:
        if hold is not None:
            os.close(hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
