"""Raft control plane figures: write-to-visible latency, failover, bulk replication, outage.

    sudo PYTHONPATH=$PWD:$PWD/agents python3 benchmarks/bench_raft.py [--writes 300]

* write -> visible on all nodes: p50/p99 over ``--writes`` sequential endpoint writes issued by
  a follower (forwarded to the leader), 3 nodes (3 voters) and 5 nodes (5 voters). "Visible" is
  the moment the last replica applied the entry (agents stamp apply times; one machine, one
  clock).
* failover: SIGKILL the leader, time until a survivor says it leads (5 voters, 3 rounds: two
  kills, one restart between).
* data-plane outage: pings every 10 ms between two hosts that are not the leader, across the
  kill; lost pings x 10 ms.
* 10,000 endpoints: one batch write, and 100 writes of 100, until every replica has them all.
* disruption: a follower cut off for 5 s and healed; terms before/after (no pre-vote).
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lab import AgentProc, BenchLab

PORT = 7946
VNI = 4096
ENCRYPT = False  # --encrypt: Fernet on top of HMAC (needs cryptography)


def mac(i: int, host: int = 0) -> str:
    return f"02:43:{host:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


class Group:
    def __init__(self, lab: BenchLab, n: int, voters: int) -> None:
        self.lab = lab
        self.hosts = [f"h{i + 1}" for i in range(n)]
        self.secret = secrets.token_hex(32)
        self.voters = [f"{lab.address(h)}:{PORT}" for h in self.hosts[:voters]]
        self.ep: Dict[str, str] = {}
        for h in self.hosts:
            self.start(h)
        for h in self.hosts:
            self.lab.agents[h].call("raft_publish", deadline=30)
        for h in self.hosts:
            assert self.lab.agents[h].call("raft_wait", endpoints=n, timeout=30)["ok"]

    def start(self, host: str, ep: str = "e0") -> AgentProc:
        a = self.lab.start_agent(host)
        self.ep[host] = ep
        i = self.hosts.index(host)
        a.call("create_network", name="overlay0", vni=VNI, subnet="10.10.0.0/16", mtu=1450)
        a.call("add_endpoint", network="overlay0", name=ep, ip=f"10.10.0.{i + 2}",
               mac=f"02:42:0a:0a:00:{i + 2:02x}")
        me = f"{self.lab.address(host)}:{PORT}"
        a.call("raft_start", secret=self.secret, voters=self.voters,
               self_addr=me if me in self.voters else None, encrypt=ENCRYPT)
        return a

    def status(self, h: str) -> Dict[str, Any]:
        return dict(self.lab.agents[h].call("raft_status"))

    def leader(self, among: List[str], min_term: int = 0, timeout: float = 20) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for h in among:
                st = self.status(h)
                if st["role"] == "leader" and st["term"] > min_term:
                    return h
            time.sleep(0.005)
        raise RuntimeError("no leader")


def add_phantom(agent: AgentProc) -> str:
    """A member with no agent to own the benchmark's endpoints (a real agent would remove
    endpoints written in its name that it does not have: it keeps its own rows in sync)."""
    agent.call("raft_write", command={"op": "member", "name": "bench", "underlay": "198.18.0.250",
                                      "vtep_port": 4789}, deadline=10)
    return "bench"


def pct(xs: List[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def bench_writes(n: int, writes: int, tmp: Path) -> Dict[str, float]:
    lab = BenchLab(n, tmp)
    try:
        g = Group(lab, n, voters=n)
        leader = g.leader(g.hosts)
        writer = next(h for h in g.hosts if h != leader)
        hi = g.hosts.index(writer) + 1
        owner = add_phantom(lab.agents[writer])
        ids = []
        for i in range(writes):
            res = lab.agents[writer].call("raft_write", command={
                "op": "endpoint", "vni": VNI, "mac": mac(i, hi), "ip": None, "host": owner},
                deadline=5)
            ids.append((res["id"], res["started_at"]))
        for h in g.hosts:
            assert lab.agents[h].call("raft_wait", endpoints=n + writes, timeout=30)["ok"]
        applied = {h: lab.agents[h].call("raft_table")["applied_at"] for h in g.hosts}
        lat = [(max(applied[h][cid] for h in g.hosts) - t0) * 1000 for cid, t0 in ids]
        return {"p50_ms": statistics.median(lat), "p99_ms": pct(lat, 99), "max_ms": max(lat)}
    finally:
        lab.close()


def bench_failover(tmp: Path) -> Dict[str, Any]:
    lab = BenchLab(5, tmp)
    out: Dict[str, Any] = {"failover_ms": [], "lost_pings": [], "outage_ms": []}
    try:
        g = Group(lab, 5, voters=5)
        for rnd in range(3):
            alive = [h for h in g.hosts if lab.agents[h].proc.poll() is None]
            leader = g.leader(alive)
            term = g.status(leader)["term"]
            a, b = [h for h in alive if h != leader][:2]
            dst = f"10.10.0.{g.hosts.index(b) + 2}"
            ping = lab.popen(f"{lab.prefix}-{a}-{g.ep[a]}", "ping", "-n", "-q", "-i", "0.01", "-W", "1",
                             "-c", "300", dst)
            time.sleep(1.0)
            t0 = time.monotonic()
            lab.agents[leader].proc.kill()
            lab.agents[leader].proc.wait()
            new = g.leader([h for h in alive if h != leader], min_term=term)
            out["failover_ms"].append((time.monotonic() - t0) * 1000)
            text, err = ping.communicate(timeout=30)
            m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
            assert m, text + err
            lost = int(m.group(1)) - int(m.group(2))
            out["lost_pings"].append(lost)
            out["outage_ms"].append(lost * 10)
            print(f"  round {rnd}: killed {leader}, {new} leads after "
                  f"{out['failover_ms'][-1]:.0f} ms; {a}->{b} lost {lost} of {m.group(1)} pings")
            if rnd == 1:  # bring one back so the third round still has a quorum to lose
                old = lab.agents.pop(leader)
                old.close()
                g.start(leader, ep="e1")
                lab.agents[leader].call("raft_publish", deadline=30)
        return out
    finally:
        lab.close()


def bench_bulk(tmp: Path, total: int = 10000) -> Dict[str, float]:
    lab = BenchLab(3, tmp)
    try:
        g = Group(lab, 3, voters=3)
        w = lab.agents["h2"]
        owner = add_phantom(w)
        res: Dict[str, float] = {}
        for label, size in (("one_batch_s", total), ("batches_of_100_s", 100)):
            base = g.status("h1")["table_size"]["endpoints"]
            hi = 10 if size == total else 11
            t0 = time.monotonic()
            for start in range(0, total, size):
                cmds = [{"op": "endpoint", "vni": VNI, "mac": mac(i, hi), "ip": None, "host": owner}
                        for i in range(start, start + size)]
                w.call("raft_write", command={"op": "batch", "commands": cmds}, deadline=60)
            for h in g.hosts:
                assert lab.agents[h].call("raft_wait", endpoints=base + total, timeout=120)["ok"]
            res[label] = time.monotonic() - t0
        return res
    finally:
        lab.close()


def bench_disruption(tmp: Path) -> Dict[str, Any]:
    lab = BenchLab(3, tmp)
    try:
        g = Group(lab, 3, voters=3)
        leader = g.leader(g.hosts)
        cut = next(h for h in g.hosts if h != leader)
        port = f"{lab.prefix}p{g.hosts.index(cut) + 1}"
        sw = lab.netlab.switch_ns
        term0 = g.status(leader)["term"]
        lab.exec(sw, "ip", "link", "set", port, "down")
        time.sleep(5)
        term_cut = g.status(cut)["term"]
        lab.exec(sw, "ip", "link", "set", port, "up")
        t0 = time.monotonic()
        while True:
            st = {h: g.status(h) for h in g.hosts}
            if len({s["digest"] for s in st.values()}) == 1 and all(s["leader"] for s in st.values()):
                break
            time.sleep(0.01)
        conv = time.monotonic() - t0
        time.sleep(2)
        term1 = g.status(leader)["term"]
        return {"term_before": term0, "term_on_cut_host": term_cut, "term_after": term1,
                "converged_s": conv}
    finally:
        lab.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--encrypt", action="store_true", help="Fernet too (hmac-sha256+fernet)")
    args = ap.parse_args()
    global ENCRYPT
    ENCRYPT = args.encrypt
    print(f"frames: {'hmac-sha256+fernet' if ENCRYPT else 'hmac-sha256'}")
    with tempfile.TemporaryDirectory(prefix="ovbench-") as d:
        tmp = Path(d)
        for n in (3, 5):
            r = bench_writes(n, args.writes, tmp)
            print(f"write->visible on all {n} nodes ({args.writes} writes from a follower): "
                  f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, max {r['max_ms']:.2f} ms")
        f = bench_failover(tmp)
        print("failover (SIGKILL leader, 5 voters): "
              + ", ".join(f"{x:.0f}" for x in f["failover_ms"]) + " ms; "
              f"data-plane outage between other hosts: {f['outage_ms']} ms")
        b = bench_bulk(tmp)
        print(f"10,000 endpoints to all 3 replicas: one batch {b['one_batch_s']:.2f} s, "
              f"100 batches of 100 {b['batches_of_100_s']:.2f} s")
        d2 = bench_disruption(tmp)
        print(f"follower cut 5 s then healed: leader term {d2['term_before']} -> "
              f"{d2['term_after']} (cut host reached term {d2['term_on_cut_host']}); "
              f"converged {d2['converged_s'] * 1000:.0f} ms after healing")


if __name__ == "__main__":
    main()
