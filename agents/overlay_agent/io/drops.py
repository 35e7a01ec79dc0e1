"""Packets a host's kernel dropped for reasons no capture on the sender shows, from ``/proc``.

* Bad checksums (``InCsumErrors`` of UDP, TCP, ICMP, their IPv6 twins and the IPv4 header):
  the packet was corrupted on the way, or by checksum offload in a NIC, driver or virtual
  switch. Overlays meet the second: some virtual NICs got the checksums of VXLAN packets
  wrong, and the receiving kernel drops every one of them.
* Reverse-path filtering (``IPReversePathFilter``): with ``rp_filter`` strict, a packet that
  arrives on an interface other than the one the route back to its source uses is dropped. A
  host with a second interface for the underlay, or asymmetric routes, loses its VXLAN traffic
  this way.
* Receive-buffer overflows of UDP sockets (``RcvbufErrors``): a reader too slow for its traffic.

The counters belong to the reader's network namespace (since it began: since boot for a
host's own), as do the ``rp_filter`` settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

#: counter groups: what the check reports per reason, by ``Section.Name`` (snmp, netstat) or
#: plain name (snmp6)
GROUPS: Dict[str, List[str]] = {
    "checksum": ["Udp.InCsumErrors", "Udp6InCsumErrors", "Tcp.InCsumErrors", "Icmp.InCsumErrors",
                 "Icmp6InCsumErrors", "IpExt.InCsumErrors"],
    "rp_filter": ["TcpExt.IPReversePathFilter"],
    "rcvbuf": ["Udp.RcvbufErrors", "Udp6RcvbufErrors"],
}
RP_MODES = {0: "off", 1: "strict", 2: "loose"}


def parse_pairs(text: str) -> Dict[str, int]:
    """``/proc/net/snmp`` or ``netstat``: a line of names, then a line of values, per section
    (``Udp: InDatagrams NoPorts ...`` / ``Udp: 12 0 ...``) -> ``{"Udp.InDatagrams": 12, ...}``."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    out: Dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2]):
        if not names or names[0] != values[0] or len(names) != len(values):
            raise ValueError(f"unpaired section {names[:1]} / {values[:1]}")
        section = names[0].rstrip(":")
        for name, value in zip(names[1:], values[1:]):
            out[f"{section}.{name}"] = int(value)
    return out


def parse_snmp6(text: str) -> Dict[str, int]:
    """``/proc/net/snmp6``: one ``Name value`` per line."""
    out: Dict[str, int] = {}
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) == 2:
            out[parts[0]] = int(parts[1])
    return out


def rp_filter(proc: Path = Path("/proc")) -> Dict[str, str]:
    """Interfaces whose effective ``rp_filter`` is on (the larger of ``all`` and the
    interface's own), with its mode; ``all`` too when it is on."""
    conf = proc / "sys/net/ipv4/conf"
    try:
        every = int((conf / "all/rp_filter").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    out: Dict[str, str] = {}
    if every:
        out["all"] = RP_MODES.get(every, str(every))
    try:
        names = sorted(p.name for p in conf.iterdir() if p.name not in ("all", "default", "lo"))
    except OSError:
        return out
    for name in names:
        try:
            mode = max(every, int((conf / name / "rp_filter").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
        if mode:
            out[name] = RP_MODES.get(mode, str(mode))
    return out


def read(proc: Path = Path("/proc")) -> Dict[str, Any]:
    """``{"counters": {group: {counter: n}}, "rp_filter": {interface: mode}}``; a counter
    this kernel lacks (no IPv6, an older kernel) is left out; ``errors`` names a file that
    could not be read."""
    found: Dict[str, int] = {}
    errors: List[str] = []
    for name, parse in (("net/snmp", parse_pairs), ("net/netstat", parse_pairs),
                        ("net/snmp6", parse_snmp6)):
        try:
            found.update(parse((proc / name).read_text()))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            errors.append(f"/proc/{name}: {type(e).__name__}: {e}")
    counters = {group: {k: found[k] for k in keys if k in found} for group, keys in GROUPS.items()}
    out: Dict[str, Any] = {"counters": counters, "rp_filter": rp_filter(proc)}
    if errors:
        out["errors"] = errors
    return out
