"""The kernel's connection-tracking table (netfilter conntrack): fill and losses, from ``/proc``.

Every host that runs Docker, kube-proxy, a NAT or a stateful firewall tracks each flow in this
table, the overlay's VXLAN flows and the containers' own connections among them. It is capped
by ``net.netfilter.nf_conntrack_max``. When it is full the kernel first evicts a flow that
never saw a reply (``early_drop``); when it finds none it drops the packet that would have
started a new connection and logs "nf_conntrack: table full, dropping packet" (``drop``). A
packet whose new entry collides with one inserted at the same moment by another CPU (the
resolver's parallel A and AAAA queries, the 5 s DNS timeouts of Kubernetes) is dropped and
counted in ``insert_failed`` where the kernel cannot resolve the clash.

Unlike the neighbour tables, the table and its counters belong to the network namespace of the
reader (the cap is the machine's): an agent on a host reads the host's, one inside a lab
namespace reads that namespace's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from overlay_agent.io.neighbours import parse_stat

#: per-CPU counters of /proc/net/stat/nf_conntrack that say a packet or an entry was lost
LOSSES = ("drop", "early_drop", "insert_failed")
#: other counters reported as they are
OTHERS = ("invalid", "clashres")

ABSENT = ("this kernel does not track connections here (no nf_conntrack: no NAT, no stateful "
          "firewall), so there is no table to fill")


def read(proc: Path = Path("/proc")) -> Dict[str, Any]:
    """``{"present": True, "count", "max", "buckets", "drop", "early_drop", "insert_failed",
    "invalid", "clashres"}`` for the reader's network namespace (the counters since it began:
    since boot for a host's own); ``{"present": False, "reason": ...}`` without conntrack;
    ``{"present": True, "error": ...}`` where the files exist but cannot be parsed."""
    base = proc / "sys/net/netfilter"
    try:
        count = int((base / "nf_conntrack_count").read_text().split()[0])
    except FileNotFoundError:
        return {"present": False, "reason": ABSENT}
    except (OSError, ValueError, IndexError) as e:
        return {"present": True, "error": f"{type(e).__name__}: {e}"}
    out: Dict[str, Any] = {"present": True, "count": count}
    try:
        out["max"] = int((base / "nf_conntrack_max").read_text().split()[0])
        buckets = base / "nf_conntrack_buckets"
        out["buckets"] = int(buckets.read_text().split()[0]) if buckets.exists() else None
        stats = parse_stat((proc / "net/stat/nf_conntrack").read_text())
    except (OSError, ValueError, IndexError) as e:
        return {"present": True, "error": f"{type(e).__name__}: {e}"}
    for key in LOSSES + OTHERS:
        if key in stats:
            out[key] = stats[key]
    return out
