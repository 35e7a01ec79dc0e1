"""Kernel overlays: does the MTU of every overlay a host already runs fit the measured paths?

One result per host, over SSH only (a local lab's hosts run no cluster). On a node of a running
cluster the cluster's VTEPs are kernel VXLAN devices (flannel's ``flannel.1``, Calico's
``vxlan.calico``, Docker Swarm's inside ``/run/docker/netns``), and a device's MTU is the MTU
its containers send with. The agent lists them (``kernel_overlays``, read-only); this check
compares each MTU with the smallest path MTU the ``pmtu`` check measured from this host to the
other hosts of the same VNI (to every other host if none has it), less the encapsulation
overhead (50 over IPv4, 70 over IPv6). A device above that fails with the number that fits and
where to set it: this is the live cluster's "small requests work, large payloads time out".

Over IPv4 the verdict depends on the device's ``df`` setting: with DF on its outer packets
(``df set``, or ``df inherit`` for TCP, whose packets carry DF) a path that eats its ICMP is a
blackhole, as for the audit's own VTEP; without (``df unset``, the kernel's default) routers
fragment the outer packets instead, which works only where fragments pass. Over IPv6 routers
never fragment, whatever the setting.

Devices in metadata mode (``external``: Cilium, OVS) carry no per-network MTU and are listed,
not judged. A host with no kernel VXLAN device is a skip: no overlay runs there yet.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from pytest_overlay.checks import overhead as overhead_check
from pytest_overlay.checks import pmtu as pmtu_check
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, RunPlan

NAME = "kernel-overlays"

Paths = Dict[Tuple[str, str], Dict[str, Any]]


def test_ids(plan: RunPlan) -> List[str]:
    return [h.name for h in plan.hosts if h.transport == "ssh"]


def owner(dev: Dict[str, Any]) -> str:
    """Which tool made the device, as far as its name and namespace tell."""
    where, name = str(dev.get("where") or ""), str(dev.get("name") or "")
    if where.startswith("docker:"):
        return f"Docker Swarm (overlay namespace {where.split(':', 1)[1]})"
    if name.startswith("flannel"):
        return "flannel"
    if name.endswith(".calico"):
        return "Calico"
    if name.startswith("cilium"):
        return "Cilium"
    return "kernel"


def fix(dev: Dict[str, Any], n: int) -> str:
    """Where to set an MTU of ``n`` for the tool that made ``dev``."""
    who, vni = owner(dev), dev.get("vni")
    if who.startswith("Docker"):
        return (f"recreate the Docker overlay network whose VXLAN id is {vni} with "
                f"--opt com.docker.network.driver.mtu={n} (docker network inspect shows the id "
                "in the network's options or in the swarm's allocation)")
    if who == "flannel":
        return (f"set \"mtu\": {n} in flannel's CNI delegate (cni-conf.json), or let flanneld "
                f"derive it from an --iface whose MTU is {n} + the overhead")
    if who == "Calico":
        return (f"set the VXLAN MTU to {n}: Installation spec.calicoNetwork.mtu (operator), or "
                f"veth_mtu in the calico-config ConfigMap and Felix's vxlanMTU")
    return f"ip link set dev {dev.get('name')} mtu {n}"


def _where(dev: Dict[str, Any]) -> str:
    return f"{dev.get('name')} (VNI {dev.get('vni')}, {owner(dev)})"


def judge(host: str, scan: Any, paths: Paths, peers_of_vni: Dict[Any, List[str]],
          others: List[str], overhead: int) -> CheckResult:
    """One host's result from its scan and the measured paths (pure: unit-tested)."""
    base: Dict[str, Any] = {"check": NAME, "src": host}
    if isinstance(scan, OverlayError):
        return CheckResult(**base, outcome="error", message=scan.message)
    devices = list(scan.get("devices") or [])
    unread = "; could not read " + "; ".join(scan["errors"]) if scan.get("errors") else ""
    if not devices:
        return CheckResult(**base, outcome="skip", details={"devices": [], **scan},
                           message=f"no kernel VXLAN device on {host}: no overlay runs here "
                                   f"yet, nothing to compare{unread}")
    problems: List[str] = []
    notes: List[str] = []
    rows: List[Dict[str, Any]] = []
    for dev in devices:
        row = dict(dev)
        rows.append(row)
        if dev.get("external") or not dev.get("mtu"):
            row["judged"] = False
            notes.append(f"{_where(dev)} is in metadata mode: its tool sets the MTU per route, "
                         "not judged here")
            continue
        over = overhead_check.expected_overhead(dev["local"]) if dev.get("local") else overhead
        peers = [b for b in peers_of_vni.get(dev.get("vni"), []) if b != host] or others
        measured = [(b, int(paths[(host, b)]["pmtu"]), paths[(host, b)].get("verdict"))
                    for b in peers if (paths.get((host, b)) or {}).get("pmtu")]
        if not measured:
            row["judged"] = False
            notes.append(f"{_where(dev)} MTU {dev['mtu']}: no path MTU measured to its peers "
                         "(see pmtu)")
            continue
        least = min(p for _b, p, _v in measured)
        fits = least - over
        limiting = [f"{host}->{b}" for b, p, _v in measured if p == least]
        row.update(judged=True, fits=fits, min_path_mtu=least, overhead=over,
                   limiting_pairs=limiting)
        mtu = int(dev["mtu"])
        if mtu <= fits:
            notes.append(f"{_where(dev)} MTU {mtu} fits (up to {fits})")
            continue
        df = dev.get("df")
        # Outer IPv4 without DF (df unset, the kernel's default): a router whose next hop is
        # too small fragments the packet instead of dropping it, so a path that eats its ICMP
        # is no blackhole for this device (tests/integration/test_kernel_overlays_df.py). What
        # the host's own link limits, its kernel answers locally for DF traffic either way.
        df_clear = over == 50 and df not in ("set", "inherit")
        # fragmenting pairs by what the pmtu check's probes without DF found: crossing,
        # dropped, or not known
        frag: Dict[Any, List[str]] = {True: [], False: [], None: []}
        stall: List[str] = []
        told: List[str] = []
        for b, p, v in measured:
            if mtu <= p - over:
                continue
            path = paths[(host, b)] or {}
            if df_clear and p < int(path.get("local_mtu") or 0):  # a hop beyond the host
                frag[path.get("fragments")].append(f"{host}->{b}")
            elif v in ("ok", "local-limit"):
                told.append(f"{host}->{b}")
            else:
                stall.append(f"{host}->{b}")
        row.update(stalling_pairs=stall + frag[False],
                   fragmenting_pairs=sorted(frag[True] + frag[False] + frag[None]))
        parts: List[str] = []
        if frag[True] or frag[False] or frag[None]:
            why = "df unset, the kernel's default" if df else "a kernel before the df setting"
            said = [f"on {', '.join(frag[True])} frames above {fits} are fragmented on the way "
                    "instead of dropped and arrive (the pmtu check's probes without DF "
                    "crossed), at two packets and a reassembly each"] if frag[True] else []
            if frag[False]:
                said.append(f"on {', '.join(frag[False])} frames above {fits} are fragmented on "
                            "the way and the path drops the fragments (the pmtu check's probes "
                            "without DF never arrived), so large payloads stall while small "
                            "requests work")
            if frag[None]:
                said.append(f"on {', '.join(frag[None])} frames above {fits} are fragmented on "
                            "the way instead of dropped: they arrive where the underlay passes "
                            "IPv4 fragments, at two packets and a reassembly each, and stall "
                            "where a firewall, NAT or load balancer drops fragments")
            parts.append(f"it sends its outer packets without DF ({why}), so " + "; ".join(said))
        if stall:
            inherit = " (df inherit: TCP's packets carry DF)" if df == "inherit" else ""
            parts.append(f"on {', '.join(stall)} packets above {fits} are lost and nothing tells "
                         f"the sender{inherit}, so large payloads stall while small requests "
                         "work")
        if told:
            parts.append(f"on {', '.join(told)} the path reports the drops (ICMP fragmentation "
                         "needed, from a router or the host's own kernel), so connections "
                         "recover only after losing their first large packets")
        text = (f"{_where(dev)} has MTU {mtu}, but the smallest path MTU from {host} is {least} "
                f"({', '.join(limiting)}), which leaves {fits}: " + "; ".join(parts))
        problems.append(f"{text}; fix: {fix(dev, fits)}")
    details = {"devices": rows, "errors": scan.get("errors") or []}
    if problems:
        return CheckResult(**base, outcome="fail", details=details,
                           message=f"{host}: " + "; ".join(problems + notes) + unread)
    return CheckResult(**base, outcome="pass", details=details,
                       message=f"{host}: " + "; ".join(notes) + unread)


async def run(session: Any) -> List[CheckResult]:
    hosts = [h for h in session.plan.hosts if h.transport == "ssh"]
    if not hosts:
        return []
    paths = await pmtu_check.measure(session)

    scans = await session.each_live(
        lambda st: session.client(st.plan.name).call("kernel_overlays", rpc_timeout=60),
        only=lambda st: st.plan.transport == "ssh")
    peers_of_vni: Dict[Any, List[str]] = {}
    for host, scan in scans.items():
        if isinstance(scan, dict):
            for dev in scan.get("devices") or []:
                peers_of_vni.setdefault(dev.get("vni"), []).append(host)
    everyone = [h.name for h in session.plan.hosts]
    out: List[CheckResult] = []
    for h in hosts:
        why: Optional[Tuple[str, str]] = session.unavailable(h.name)
        if why is not None:
            out.append(CheckResult(check=NAME, src=h.name, outcome=why[0],  # type: ignore[arg-type]
                                   message=why[1]))
            continue
        out.append(judge(h.name, scans[h.name], paths, peers_of_vni,
                         [b for b in everyone if b != h.name],
                         overhead_check.expected_overhead(h.underlay)))
    return out
