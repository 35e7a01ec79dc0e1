#!/usr/bin/env python3
"""Large TCP transfers across a low-MTU underlay hop, with the VTEP's PTB relay on and off.

    sudo python3 benchmarks/bench_ptb_relay.py [--topology fixtures/war-story.yaml]
                                               [--rounds 3] [--kib 256] [--json]

Builds the topology (fresh run prefix, removed at the end), one agent per host with one
endpoint each (VNI 4096, MTU 1450, or 1430 on an IPv6 underlay), then for every ordered pair a
TCP transfer of ``--kib`` KiB (10 s timeout) from a cold start: the route caches of every lab
host and endpoint are flushed before each transfer, so no path MTU is known in advance. Once
with the relay (the default) and once with ``OVERLAY_PTB_RELAY=0``. Prints per pair whether it
completed, how long it took, and the sender's path MTU and retransmissions (``TCP_INFO``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from _lab import ROOT, AgentProc, LabTopology, NetLab, kill_processes, netns, new_prefix

VNI = 4096


def _flush(namespaces: List[str], v6: bool) -> None:
    for ns in namespaces:
        netns.ip("route", "flush", "cache", netns=ns)
        if v6:
            netns.ip("-6", "route", "flush", "cache", netns=ns)


def run(topo: LabTopology, relay: bool, rounds: int, kib: int, tmp: Path) -> Dict[str, Any]:
    prefix = new_prefix()
    lab = NetLab(topo, prefix)
    agents: Dict[str, AgentProc] = {}
    hosts = [h.name for h in topo.hosts]
    v6 = ":" in topo.hosts[0].address
    mtu = 1430 if v6 else 1450
    eps = {h: (f"10.10.0.{i + 2}", f"02:42:0a:0a:00:{i + 2:02x}") for i, h in enumerate(hosts)}
    out: Dict[str, Any] = {"relay": relay, "mtu": mtu, "pairs": {}}
    try:
        host_ns = lab.build()
        env = None if relay else {"OVERLAY_PTB_RELAY": "0"}
        for h in topo.hosts:
            a = AgentProc(host_ns[h.name], tmp / f"{prefix}-{h.name}.log", env=env)
            agents[h.name] = a
            a.call("hello", protocol=1)
            a.call("configure", host=h.name, prefix=prefix, underlay=h.address)
            a.call("create_network", name="ov", vni=VNI, subnet="10.10.0.0/16", mtu=mtu)
            ip, mac = eps[h.name]
            a.call("add_endpoint", network="ov", name="e0", ip=ip, mac=mac)
        entries = [{"mac": mac, "ip": ip, "vtep": [h.address, 4789]}
                   for h in topo.hosts for ip, mac in [eps[h.name]]]
        vteps = [[h.address, 4789] for h in topo.hosts]
        for a in agents.values():
            a.call("set_members", vteps=[h.address for h in topo.hosts])
            a.call("set_mappings", vni=VNI, entries=entries, vteps=vteps)
        every_ns = [*host_ns.values(), *(f"{prefix}-{h}-e0" for h in hosts)]
        for _ in range(rounds):
            for src in hosts:
                for dst in hosts:
                    if src == dst:
                        continue
                    _flush(every_ns, v6)
                    r = agents[src].call("tcp_transfer", endpoint="e0", dst=eps[dst][0],
                                         nbytes=kib * 1024, timeout=10.0)
                    info = r.get("tcp_info") or {}
                    out["pairs"].setdefault(f"{src}->{dst}", []).append(
                        {"ok": r["ok"], "ms": r.get("ms"), "pmtu": info.get("pmtu"),
                         "retransmits": info.get("retransmits")})
        out["relayed"] = {h: a.call("counters")["vnis"][str(VNI)]["ptb_relayed"]
                          for h, a in agents.items()}
    finally:
        for a in agents.values():
            a.close()
        kill_processes(prefix)
        lab.destroy()
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topology", default=str(ROOT / "fixtures" / "war-story.yaml"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kib", type=int, default=256)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    topo = LabTopology.load(args.topology)
    with tempfile.TemporaryDirectory(prefix="ovbench-") as tmp:
        res = [run(topo, relay, args.rounds, args.kib, Path(tmp)) for relay in (True, False)]
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"topology {Path(args.topology).name}, {args.kib} KiB per transfer, cold caches, "
          f"{args.rounds} rounds, network MTU {res[0]['mtu']}")
    for r in res:
        print(f"PTB relay {'on' if r['relay'] else 'off'} (ICMPs relayed per host: "
              f"{r['relayed']})")
        for pair, rows in sorted(r["pairs"].items()):
            done = [x for x in rows if x["ok"]]
            ms = (f"{statistics.median(x['ms'] for x in done):7.1f} ms median"
                  if done else "      stalled")
            print(f"  {pair:<8} completed {len(done)}/{len(rows)}  {ms}  sender pmtu "
                  f"{sorted({x['pmtu'] for x in rows})}  retransmits "
                  f"{[x['retransmits'] for x in rows]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
