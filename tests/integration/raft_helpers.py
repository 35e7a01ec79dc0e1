"""Helpers for the Raft integration tests: agents with endpoints, joined into one Raft group."""

from __future__ import annotations

import ipaddress
import secrets
import time
from typing import Any, Callable, Dict, List, Optional

from tests.integration.conftest import AgentProc, Lab

RAFT_PORT = 7946
VNI = 4096
SUBNET = "10.10.0.0/16"


def mac_for(ip: str) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def ep_ip(i: int) -> str:
    return str(ipaddress.ip_network(SUBNET)[i + 2])


class RaftLab:
    """``n`` hosts; the first ``voters`` vote, the rest are read-only replicas."""

    def __init__(self, lab: Lab, n: int, voters: int = 3, secret: Optional[str] = None) -> None:
        self.lab = lab
        self.hosts = [f"h{i + 1}" for i in range(n)]
        self.secret = secret or secrets.token_hex(32)
        self.voter_addrs = [f"{lab.address(h)}:{RAFT_PORT}" for h in self.hosts[:voters]]
        self.agents: Dict[str, AgentProc] = {}

    def start_host(self, host: str, publish: bool = True, secret: Optional[str] = None,
                   ep_name: str = "e0") -> AgentProc:
        i = self.hosts.index(host)
        a = self.lab.agent(host)
        a.call("create_network", name="overlay0", vni=VNI, subnet=SUBNET, mtu=1450)
        a.call("add_endpoint", network="overlay0", name=ep_name, ip=ep_ip(i), mac=mac_for(ep_ip(i)))
        addr = f"{self.lab.address(host)}:{RAFT_PORT}"
        a.call("raft_start", secret=secret or self.secret, voters=self.voter_addrs,
               self_addr=addr if addr in self.voter_addrs else None)
        self.agents[host] = a
        if publish:
            a.call("raft_publish", deadline=30.0)
        return a

    def start(self) -> RaftLab:
        for h in self.hosts:
            self.start_host(h, publish=False)
        for h in self.hosts:
            self.agents[h].call("raft_publish", deadline=30.0)
        self.wait_all(lambda a: a.call("raft_wait", endpoints=len(self.hosts), timeout=20)["ok"])
        return self

    def wait_all(self, pred: Callable[[AgentProc], bool], hosts: Optional[List[str]] = None,
                 timeout: float = 20.0) -> None:
        for h in hosts or list(self.agents):
            end = time.monotonic() + timeout
            while not pred(self.agents[h]):
                assert time.monotonic() < end, f"{h}: condition not reached within {timeout} s"
                time.sleep(0.1)

    def status(self, host: str) -> Dict[str, Any]:
        return dict(self.agents[host].call("raft_status"))

    def leader(self, among: Optional[List[str]] = None, timeout: float = 10.0) -> str:
        """The host whose agent says it leads (polling until one does)."""
        end = time.monotonic() + timeout
        while True:
            for h in among or list(self.agents):
                if self.agents[h].proc.poll() is None and self.status(h)["role"] == "leader":
                    return h
            assert time.monotonic() < end, "no leader elected"
            time.sleep(0.05)

    def ping(self, src: str, dst: str, count: int = 3, endpoint: str = "e0") -> Dict[str, Any]:
        return dict(self.agents[src].call("ping", endpoint=endpoint,
                                          dst=ep_ip(self.hosts.index(dst)), count=count,
                                          timeout=1.0, interval=0.02))

    def link(self, host: str, up: bool) -> None:
        """Cut (or heal) ``host`` off the underlay: its port in the lab switch goes down."""
        port = f"{self.lab.prefix}p{self.hosts.index(host) + 1}"
        self.lab.run(host, "ip", "link", "set", port, "up" if up else "down",
                     netns=self.lab.netlab.switch_ns)

    def kill(self, host: str) -> None:
        a = self.agents[host]
        a.proc.kill()
        a.proc.wait(10)
