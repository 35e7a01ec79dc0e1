"""Agent operations for the underlay path-MTU check (a mixin :class:`Agent` inherits).

``pmtu_listen`` starts the echo responder on this host's underlay address (the controller calls
it on every host before any probing); ``pmtu_probe`` searches the path MTU to other hosts, all
destinations in parallel (one thread each, bounded).
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

from overlay_agent.io import pmtu
from overlay_agent.methods import rpc

#: The probe port on the underlay (UDP): next to VXLAN's 4789, outside IANA's assigned VXLAN
#: ports. A firewall must let it through for the check to see the VXLAN path as VXLAN sees it.
DEFAULT_PMTU_PORT = 47890


def _norm(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr.split("%")[0]))
    except ValueError:
        return addr


class PmtuMethods:
    _pmtu_responder: Optional[pmtu.EchoResponder] = None

    def _underlay_address(self) -> str:
        dp = getattr(self, "dataplane", None)
        if dp is None:
            raise RuntimeError("configure the VTEP first: the responder uses its underlay address")
        return str(dp.address)

    @rpc()
    def pmtu_listen(self, port: int = DEFAULT_PMTU_PORT) -> Dict[str, Any]:
        """Start (once) the UDP echo responder for path-MTU probes on the underlay address."""
        if self._pmtu_responder is None:
            core = getattr(self, "core", None)

            def member(addr: str) -> bool:
                # The VTEP's member list (set_members) decides, as for VXLAN itself.
                return core is not None and _norm(addr) in core.members

            self._pmtu_responder = pmtu.EchoResponder(self._underlay_address(), port, member)
        r = self._pmtu_responder
        return {"address": r.address, "port": r.port, "refused": r.refused}

    @rpc(slow=True)
    def pmtu_probe(self, dsts: List[str], port: int = DEFAULT_PMTU_PORT, timeout: float = 0.2,
                   copies: int = 3, parallel: int = 16, flows: int = 1,
                   sport_base: int = 0) -> Dict[str, Any]:
        """Path MTU from this host to each of ``dsts`` (underlay addresses), in parallel.

        With ``flows`` > 1 every destination is searched that many times at once, each search
        a flow of its own (source port ``sport_base`` + destination index * ``flows`` + flow,
        or ephemeral ports without a base): a multipath underlay hashes them over its legs. The
        result of a destination is then its first flow's, plus ``flows``: all of them."""
        src = self._underlay_address()
        flows = max(1, int(flows))
        jobs = [(d, i * flows + f) for i, d in enumerate(dsts) for f in range(flows)]
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs) or 1))) as pool:
            futures = [(d, pool.submit(pmtu.probe_path, src, d, port, timeout, copies,
                                       sport=sport_base + k if sport_base else 0))
                       for d, k in jobs]
            per_dst: Dict[str, List[Dict[str, Any]]] = {}
            for d, f in futures:
                try:
                    r = f.result()
                except OSError as e:
                    r = {"verdict": "error", "error": f"probing {d} failed: {e}"}
                per_dst.setdefault(d, []).append(r)
        out: Dict[str, Any] = {}
        for d, results in per_dst.items():
            out[d] = dict(results[0])
            if flows > 1:
                out[d]["flows"] = results
        return {"results": out}

    def _pmtu_cleanup(self) -> None:
        if self._pmtu_responder is not None:
            self._pmtu_responder.close()
            self._pmtu_responder = None
