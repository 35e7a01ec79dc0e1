"""The kernel's neighbour tables (ARP and NDP): entries, caps and overflows, read from ``/proc``.

Each table is the kernel's, one for all network namespaces together, and so are its caps
(``net.ipv4.neigh.default.gc_thresh3``, 1024 by default, and ``gc_thresh2``, above which the
kernel collects entries older than 5 s) and its statistics. Both are visible only from the
initial namespace: inside a container or a lab host the files do not exist, and :func:`read`
says so instead of guessing. When a new neighbour does not fit, the kernel logs "neighbor
table overflow!", counts it in ``table_fulls`` and the packet that needed it fails (ENOBUFS):
a node with many containers talking to many peers meets this, and then its overlay fails for
reasons no packet capture shows.

``entries`` counts every entry, also the permanent ones the cap does not apply to (the kernel
does not export the count it compares with the cap), so it is an upper bound of the cap's use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

#: table name -> (statistics file, sysctl directory), both under /proc
TABLES = {
    "arp": ("net/stat/arp_cache", "sys/net/ipv4/neigh/default"),
    "ndisc": ("net/stat/ndisc_cache", "sys/net/ipv6/neigh/default"),
}

NOT_VISIBLE = ("the kernel's neighbour tables are visible only from the initial network "
               "namespace, and this agent runs in another (a container or a lab host)")


def parse_stat(text: str) -> Dict[str, int]:
    """A ``/proc/net/stat/*_cache`` file: a header of column names, then one row of hex numbers
    per CPU. ``entries`` is the table's (the same on every row); the other columns are per-CPU
    counters and are summed."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ValueError("no rows under the header")
    head, rows = lines[0], lines[1:]
    out: Dict[str, int] = {}
    for i, name in enumerate(head):
        values = [int(row[i], 16) for row in rows]
        out[name] = values[0] if name == "entries" else sum(values)
    return out


def read(proc: Path = Path("/proc")) -> Dict[str, Any]:
    """``{"visible": True, "tables": {"arp": {...}, "ndisc": {...}}}`` with each table's
    ``entries``, ``table_fulls`` (overflows since boot), ``forced_gc_runs``, ``gc_thresh2`` and
    ``gc_thresh3``; ``{"visible": False, "reason": ...}`` where none can be read. A table whose
    family is off (no ``ndisc_cache`` without IPv6) is left out; one that cannot be parsed
    carries ``error`` instead of numbers."""
    tables: Dict[str, Any] = {}
    for name, (stat, sysctl) in TABLES.items():
        try:
            counters = parse_stat((proc / stat).read_text())
            caps = {k: int((proc / sysctl / k).read_text().split()[0])
                    for k in ("gc_thresh2", "gc_thresh3")}
        except FileNotFoundError:
            continue
        except (OSError, ValueError, IndexError) as e:
            tables[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        tables[name] = {"entries": counters.get("entries", 0),
                        "table_fulls": counters.get("table_fulls", 0),
                        "forced_gc_runs": counters.get("forced_gc_runs", 0), **caps}
    if not tables:
        return {"visible": False, "reason": NOT_VISIBLE}
    return {"visible": True, "tables": tables}
