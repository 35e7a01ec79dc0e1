#!/usr/bin/env python3
"""Data-plane benchmark: the agent's userspace VTEP against a kernel vxlan pair, same lab.

    sudo python3 benchmarks/bench_dataplane.py [--seconds 10] [--json] [--portable]

Builds a 2-host namespace lab (fresh run prefix, underlay 198.18.0.0/24), starts one agent per
host with one endpoint each (VNI 4096, 10.10.0.0/16), and measures between the two endpoints:
iperf3 TCP throughput, iperf3 UDP with 1400-byte datagrams (received packets per second and
loss, receiver side) and ping RTT. Then it stops the agents, puts a kernel vxlan device
(VNI 4097, dstport 4790) into a fresh endpoint namespace on each host (10.11.0.0/16), measures
the same and prints both, the ratios, and the targets. Everything is removed at the end.

``--pdr 0.5`` also searches, on both paths, the highest UDP rate received with at most 0.5 %
lost (``_search.search_rate``), the capacity figure data-plane benchmarks report beside the
overload one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lab import BenchLab, machine
from _search import search_rate
from overlay_agent.io import netns

TARGETS = {"tcp": 0.25, "udp": 0.70, "rtt_added_ms": 0.15}
MTU = 1450
VNI_AGENT, VNI_KERNEL = 4096, 4097
PORT_IPERF = 5201
#: datagram size of every UDP run; an offered rate in packets per second is this many bytes each
UDP_LEN = 1400
#: iperf3's pacing timer in the loss-bounded search: tops up every 100 us instead of every 1 ms,
#: so that the offer is close to a constant rate (as a traffic generator's) and not bursts of a
#: millisecond's worth of datagrams
PDR_PACING_US = 100


def _clk() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def cpu_seconds(pids: List[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / _clk()


class Path2:
    """Two endpoints (namespace, address) joined by one of the overlay paths."""

    def __init__(self, name: str, src_ns: str, dst_ns: str, dst_ip: str,
                 pids: Optional[List[int]] = None,
                 delivered: Optional[Callable[[], int]] = None) -> None:
        self.name, self.src_ns, self.dst_ns, self.dst_ip = name, src_ns, dst_ns, dst_ip
        self.pids = pids or []
        #: frames the receiving VTEP has handed to its endpoint so far (agent path only)
        self.delivered = delivered


def iperf(lab: BenchLab, path: Path2, seconds: float, udp: bool,
          rate: str = "20G", window: Optional[str] = None,
          pacing_us: Optional[int] = None) -> Dict[str, Any]:
    server = lab.popen(path.dst_ns, "iperf3", "-s", "-1", "-p", str(PORT_IPERF), "-J")
    try:
        time.sleep(0.4)
        args = ["iperf3", "-c", path.dst_ip, "-p", str(PORT_IPERF), "-t", str(seconds), "-J"]
        if udp:
            args += ["-u", "-l", str(UDP_LEN), "-b", rate]
        if window:  # socket buffers of both ends (iperf3 hands -w to the server too)
            args += ["-w", window]
        if pacing_us:  # how often iperf3 tops its sending up to the rate (default 1000 us)
            args += ["--pacing-timer", str(pacing_us)]
        d0 = path.delivered() if path.delivered else 0
        e0 = rcvbuf_errors(lab, path.dst_ns) if udp else 0
        cpu0, t0 = cpu_seconds(path.pids), time.monotonic()
        out = json.loads(lab.exec(path.src_ns, *args, timeout=seconds + 60))
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(path.pids) - cpu0) / elapsed
        delivered = (path.delivered() - d0) / elapsed if path.delivered else None
        srv_out, _ = server.communicate(timeout=15)
        overflowed = (rcvbuf_errors(lab, path.dst_ns) - e0) / elapsed if udp else None
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if "error" in out:
        raise RuntimeError(f"iperf3 on {path.name}: {out['error']}")
    if not udp:
        bps = out["end"]["sum_received"]["bits_per_second"]
        return {"mbit_s": bps / 1e6, "retransmits": out["end"]["sum_sent"].get("retransmits"),
                "agent_cpu": cpu}
    # Receiver side: the server's own report of what arrived.
    srv = json.loads(srv_out)["end"]["sum"]
    packets, lost = srv["packets"], srv["lost_packets"]
    secs = srv["seconds"] or seconds
    return {"pps": (packets - lost) / secs, "sent_pps": out["end"]["sum"]["packets"] / secs,
            "loss_pct": srv["lost_percent"], "agent_cpu": cpu, "offered": rate, "window": window,
            # what the receiving VTEP handed to the endpoint's kernel, per second of the run
            # (a few ARP/ping frames besides iperf3's): how much of the loss is past the VTEP
            "vtep_delivered_pps": delivered,
            # datagrams the receiving endpoint's kernel dropped because iperf3's socket was full
            "rcvbuf_errors_ps": overflowed}


def rcvbuf_errors(lab: BenchLab, ns: str) -> int:
    """The endpoint kernel's count of UDP datagrams dropped for a full socket buffer."""
    rows = [ln.split() for ln in lab.exec(ns, "cat", "/proc/net/snmp").splitlines()
            if ln.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def ping(lab: BenchLab, path: Path2, count: int) -> Dict[str, Any]:
    lab.exec(path.src_ns, "ping", "-c", "3", "-i", "0.05", "-W", "1", path.dst_ip)
    out = lab.exec(path.src_ns, "ping", "-c", str(count), "-i", "0.01", "-q", path.dst_ip,
                   timeout=count * 0.05 + 30)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    loss = re.search(r"([\d.]+)% packet loss", out)
    if not m:
        raise RuntimeError(f"cannot parse ping output: {out}")
    return {"min_ms": float(m.group(1)), "avg_ms": float(m.group(2)), "max_ms": float(m.group(3)),
            "loss_pct": float(loss.group(1)) if loss else None}


def pdr_search(lab: BenchLab, path: Path2, loss_pct: float, trial_s: float,
               overload: Dict[str, Any]) -> Dict[str, Any]:
    """The highest UDP rate ``path`` carries with at most ``loss_pct`` % lost at the receiver
    (``_search.search_rate``, one iperf3 run of ``trial_s`` per trial, paced every 100 us),
    between 0 and what the sender offered in the overload run; it starts at what arrived there.
    If the overload run itself lost no more than the bound, the sender was the limit and that
    run's received rate is the answer.
    """
    if overload["loss_pct"] <= loss_pct:
        return {"loss_bound_pct": loss_pct, "pps": overload["pps"], "limit": "sender",
                "trials": []}

    def trial(rate: float) -> Tuple[float, float, Dict[str, Any]]:
        r = iperf(lab, path, trial_s, udp=True, rate=str(int(rate * UDP_LEN * 8)),
                  pacing_us=PDR_PACING_US)
        return r["pps"], r["loss_pct"], {"rcvbuf_errors_ps": r["rcvbuf_errors_ps"],
                                         "vtep_delivered_pps": r["vtep_delivered_pps"]}

    return search_rate(trial, loss_pct, overload["pps"], overload["sent_pps"])


def measure(lab: BenchLab, path: Path2, seconds: float, pings: int,
            udp_rates: Optional[List[str]] = None,
            udp_window: Optional[str] = None,
            pdr: Optional[float] = None, pdr_trial: float = 3.0) -> Dict[str, Any]:
    res: Dict[str, Any] = {"ping": ping(lab, path, pings)}
    res["tcp"] = iperf(lab, path, seconds, udp=False)
    res["udp"] = iperf(lab, path, seconds, udp=True)
    if udp_rates:
        res["udp_sweep"] = [iperf(lab, path, seconds, udp=True, rate=r) for r in udp_rates]
    if udp_window:
        res["udp_window"] = iperf(lab, path, seconds, udp=True, window=udp_window)
    if pdr is not None:
        res["udp_pdr"] = pdr_search(lab, path, pdr, pdr_trial, res["udp"])
    return res


def agent_path(lab: BenchLab, portable: bool, tap_tso: str = "auto",
               coalesce: bool = True, extra_env: Optional[Dict[str, str]] = None,
               remcsum: bool = True) -> Path2:
    env = {"OVERLAY_DATAPLANE": "portable" if portable else "fast",
           "OVERLAY_TAP_TSO": {"on": "1", "off": "0"}.get(tap_tso, "auto"),
           "OVERLAY_TAP_GRO": "1" if coalesce else "0"}
    env.update(extra_env or {})
    eps = {"h1": ("10.10.0.2", "02:42:0a:0a:00:02"), "h2": ("10.10.0.3", "02:42:0a:0a:00:03")}
    agents = {h: lab.start_agent(h, env) for h in eps}
    for host, agent in agents.items():
        agent.call("create_network", name="ov", vni=VNI_AGENT, subnet="10.10.0.0/16", mtu=MTU)
        ip, mac = eps[host]
        agent.call("add_endpoint", network="ov", name="e0", ip=ip, mac=mac)
    entries = [{"mac": mac, "ip": ip, "vtep": [lab.address(h), 4789]}
               for h, (ip, mac) in eps.items()]
    vteps = [[lab.address(h), 4789] for h in eps]
    for agent in agents.values():
        members = [lab.address(h) for h in eps]
        # As the plugin does: every member is an agent and takes Remote Checksum Offload.
        agent.call("set_members", vteps=members, remcsum=members if remcsum else [])
        agent.call("set_mappings", vni=VNI_AGENT, entries=entries, vteps=vteps)
    def delivered() -> int:
        return int(agents["h2"].call("counters")["vnis"][str(VNI_AGENT)]["rx_packets"])

    return Path2("agent", f"{lab.prefix}-h1-e0", f"{lab.prefix}-h2-e0", "10.10.0.3",
                 [a.proc.pid for a in agents.values()], delivered)


def kernel_path(lab: BenchLab) -> Path2:
    """A kernel vxlan device per host, moved into an endpoint namespace (its socket stays in
    the host namespace), static remote: the kernel's own fast path, no bridge."""
    ips = {"h1": "10.11.0.2", "h2": "10.11.0.3"}
    for host, peer in (("h1", "h2"), ("h2", "h1")):
        hns = lab.host_ns[host]
        ens = lab.add_ns(f"{host}-k0")
        dev = f"{lab.prefix}k"
        netns.ip("link", "add", dev, "type", "vxlan", "id", str(VNI_KERNEL), "local",
                 lab.address(host), "remote", lab.address(peer), "dstport", "4790",
                 netns=hns)
        netns.ip("link", "set", dev, "netns", ens, netns=hns)
        netns.ip("link", "set", dev, "name", "eth0", "mtu", str(MTU), netns=ens)
        netns.ip("addr", "add", f"{ips[host]}/16", "dev", "eth0", netns=ens)
        netns.ip("link", "set", "eth0", "up", netns=ens)
    return Path2("kernel", f"{lab.prefix}-h1-k0", f"{lab.prefix}-h2-k0", ips["h2"])


def summarize(agent: Dict[str, Any], kernel: Dict[str, Any]) -> Dict[str, Any]:
    tcp = agent["tcp"]["mbit_s"] / kernel["tcp"]["mbit_s"]
    udp = agent["udp"]["pps"] / kernel["udp"]["pps"]
    rtt = agent["ping"]["avg_ms"] - kernel["ping"]["avg_ms"]
    return {"tcp_ratio": tcp, "udp_pps_ratio": udp, "rtt_added_ms": rtt,
            "tcp_ok": tcp >= TARGETS["tcp"], "udp_ok": udp >= TARGETS["udp"],
            "rtt_ok": rtt <= TARGETS["rtt_added_ms"]}


def render(res: Dict[str, Any]) -> str:
    a, k, s = res["agent"], res["kernel"], res["summary"]
    ok = {True: "ok", False: "MISS"}
    rows = [
        ("TCP Mbit/s", f"{a['tcp']['mbit_s']:.0f}", f"{k['tcp']['mbit_s']:.0f}",
         f"{s['tcp_ratio']:.2f}", f">= {TARGETS['tcp']}", ok[s["tcp_ok"]]),
        ("UDP 1400B kpps (rx)", f"{a['udp']['pps'] / 1e3:.1f}", f"{k['udp']['pps'] / 1e3:.1f}",
         f"{s['udp_pps_ratio']:.2f}", f">= {TARGETS['udp']}", ok[s["udp_ok"]]),
        ("UDP loss %", f"{a['udp']['loss_pct']:.1f}", f"{k['udp']['loss_pct']:.1f}", "", "", ""),
        ("UDP kpps the VTEP delivered", f"{(a['udp'].get('vtep_delivered_pps') or 0) / 1e3:.1f}",
         "", "", "", ""),
        ("UDP kpps lost at iperf3's socket", f"{(a['udp'].get('rcvbuf_errors_ps') or 0) / 1e3:.1f}",
         f"{(k['udp'].get('rcvbuf_errors_ps') or 0) / 1e3:.1f}", "", "", ""),
        ("ping RTT avg ms", f"{a['ping']['avg_ms']:.3f}", f"{k['ping']['avg_ms']:.3f}",
         f"+{s['rtt_added_ms']:.3f}", f"<= +{TARGETS['rtt_added_ms']}", ok[s["rtt_ok"]]),
        ("agent CPU (TCP/UDP)", f"{a['tcp']['agent_cpu']:.2f}/{a['udp']['agent_cpu']:.2f}",
         "", "", "", ""),
    ]
    head = ("metric", "agent VTEP", "kernel vxlan", "ratio", "target", "")
    notes: List[str] = []
    if "udp_sweep" in a and "udp_sweep" in k:
        for ua, uk in zip(a["udp_sweep"], k["udp_sweep"]):
            rows.append((f"UDP kpps (rx) at {ua['offered']}bit/s", f"{ua['pps'] / 1e3:.1f}",
                         f"{uk['pps'] / 1e3:.1f}", f"{ua['pps'] / uk['pps']:.2f}", "", ""))
        pa = max(u["pps"] for u in a["udp_sweep"] + [a["udp"]])
        pk = max(u["pps"] for u in k["udp_sweep"] + [k["udp"]])
        rows.append(("UDP kpps (rx), best of all rates", f"{pa / 1e3:.1f}", f"{pk / 1e3:.1f}",
                     f"{pa / pk:.2f}", "", ""))
    if "udp_window" in a and "udp_window" in k:
        ua, uk = a["udp_window"], k["udp_window"]
        rows.append((f"UDP kpps (rx), iperf3 -w {ua['window']} on both", f"{ua['pps'] / 1e3:.1f}",
                     f"{uk['pps'] / 1e3:.1f}", f"{ua['pps'] / uk['pps']:.2f}", "", ""))
        rows.append(("  UDP loss % with it", f"{ua['loss_pct']:.1f}", f"{uk['loss_pct']:.1f}",
                     "", "", ""))
        rows.append(("  kpps lost at iperf3's socket with it",
                     f"{(ua.get('rcvbuf_errors_ps') or 0) / 1e3:.1f}",
                     f"{(uk.get('rcvbuf_errors_ps') or 0) / 1e3:.1f}", "", "", ""))
    if "udp_pdr" in a and "udp_pdr" in k:
        pa, pk = a["udp_pdr"], k["udp_pdr"]
        rows.append((f"UDP kpps (rx) at <= {pa['loss_bound_pct']:g} % loss (search)",
                     f"{pa['pps'] / 1e3:.1f}", f"{pk['pps'] / 1e3:.1f}",
                     f"{pa['pps'] / pk['pps']:.2f}" if pk["pps"] else "", "", ""))
        rows.append(("  trials (what limited it)", f"{len(pa['trials'])} ({pa['limit']})",
                     f"{len(pk['trials'])} ({pk['limit']})", "", "", ""))
        for name, res_ in (("agent", pa), ("kernel vxlan", pk)):
            trials = "; ".join(
                f"{t['offered_pps'] / 1e3:.1f} -> {t['pps'] / 1e3:.1f} "
                f"({t['loss_pct']:.2f} %, {(t['rcvbuf_errors_ps'] or 0) / 1e3:.1f} at the socket)"
                f" {'pass' if t['passed'] else 'fail'}" for t in res_["trials"])
            notes.append(f"{name} search, offered -> received kpps (loss): "
                         f"{trials or 'none: the sender was the limit'}")
    widths = [max(len(str(r[i])) for r in [*rows, head]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines += notes
    if "baseline" in res:
        b, bs = res["baseline"], res["baseline_summary"]
        lines.append(f"agent with {res['baseline_env']}, same run: TCP {b['tcp']['mbit_s']:.0f} Mbit/s "
                     f"({bs['tcp_ratio']:.2f}), UDP {b['udp']['pps'] / 1e3:.1f} kpps "
                     f"({bs['udp_pps_ratio']:.2f}), ping {b['ping']['avg_ms']:.3f} ms "
                     f"(+{bs['rtt_added_ms']:.3f})")
    lines.append(f"(agent data plane: {res['dataplane']}, TAP TSO: {res['tap_tso']}, "
                 f"remote checksum offload: {res['remcsum']}, "
                 f"receive coalescing: {res['coalesce']}, "
                 f"{res['seconds']} s per iperf3 run, "
                 f"{res['pings']} pings)")
    if "machine" in res:
        lines.append(f"(machine: {res['machine']})")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="length of each iperf3 run")
    p.add_argument("--pings", type=int, default=500, help="pings per path (10 ms apart)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--portable", action="store_true",
                   help="force the agent's portable one-frame path (OVERLAY_DATAPLANE=portable)")
    p.add_argument("--tap-tso", choices=("auto", "on", "off"), default="auto",
                   help="TAP checksum offload + TSO: auto (the default: on with Remote Checksum "
                        "Offload peers), on (OVERLAY_TAP_TSO=1), off (OVERLAY_TAP_TSO=0)")
    p.add_argument("--no-remcsum", action="store_true",
                   help="do not tell the agents that their peer takes VXLAN Remote Checksum "
                        "Offload (checksums are then finished in Python, or not offloaded)")
    p.add_argument("--no-coalesce", action="store_true",
                   help="no receive coalescing into the TAPs (OVERLAY_TAP_GRO=0)")
    p.add_argument("--baseline", nargs="?", const="OVERLAY_TAP_GRO=0", metavar="ENV=VAL,...",
                   help="also measure the agent with these environment settings, in the same "
                        "run (default: OVERLAY_TAP_GRO=0, no receive coalescing)")
    p.add_argument("--agent-only", action="store_true", help="skip the kernel vxlan path")
    p.add_argument("--udp-rates", default="", metavar="RATE,...",
                   help="also run UDP at these offered rates (iperf3 -b, e.g. 1.2G,2G) on both "
                        "paths and print the received rate of each and the best")
    p.add_argument("--udp-window", default=None, metavar="SIZE",
                   help="also run UDP at the default offer with iperf3 -w SIZE (the socket "
                        "buffers of both ends, e.g. 1M) on both paths: how much of the loss is "
                        "the receiving socket's")
    p.add_argument("--pdr", type=float, default=None, metavar="LOSS%",
                   help="also search, on both paths, the highest UDP rate received with at most "
                        "LOSS%% lost (0.5: FD.io CSIT's partial drop rate; 0: RFC 2544 "
                        "throughput); iperf3 paced every 100 us, one run per trial")
    p.add_argument("--pdr-trial", type=float, default=3.0, metavar="SECONDS",
                   help="length of each trial of the --pdr search (default 3)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("needs root (network namespaces, TAP devices): run with sudo")

    with tempfile.TemporaryDirectory(prefix="ovbench-") as tmp:
        lab = BenchLab(2, Path(tmp))
        try:
            res: Dict[str, Any] = {"prefix": lab.prefix, "machine": machine(),
                                   "seconds": args.seconds,
                                   "pings": args.pings,
                                   "dataplane": "portable" if args.portable else "default",
                                   "tap_tso": args.tap_tso,
                                   "remcsum": not args.no_remcsum}
            if args.baseline:
                benv = dict(kv.split("=", 1) for kv in args.baseline.split(","))
                res["baseline_env"] = benv
                res["baseline"] = measure(lab, agent_path(lab, args.portable, args.tap_tso,
                                                          extra_env=benv,
                                                          remcsum=not args.no_remcsum),
                                          args.seconds, args.pings)
                lab.stop_agents()
            rates = [r for r in args.udp_rates.split(",") if r]
            res["agent"] = measure(lab, agent_path(lab, args.portable, args.tap_tso,
                                                   not args.no_coalesce,
                                                   remcsum=not args.no_remcsum),
                                   args.seconds, args.pings, rates, args.udp_window,
                                   args.pdr, args.pdr_trial)
            res["agent_counters"] = lab.agents["h1"].call("counters")
            res["coalesce"] = not args.no_coalesce
            lab.stop_agents()
            if args.agent_only:
                print(json.dumps(res, indent=2))
                return 0
            res["kernel"] = measure(lab, kernel_path(lab), args.seconds, args.pings, rates,
                                    args.udp_window, args.pdr, args.pdr_trial)
            res["summary"] = summarize(res["agent"], res["kernel"])
            if args.baseline:
                res["baseline_summary"] = summarize(res["baseline"], res["kernel"])
        except KeyboardInterrupt:
            print("interrupted: cleaning up", file=sys.stderr)
            return 130
        finally:
            lab.close()
    print(json.dumps(res, indent=2) if args.json else render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
